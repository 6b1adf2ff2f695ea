# shellcheck shell=bash
# utils/parse_options.sh -- Kaldi-compatible command-line option parser (our own implementation).
#
# Usage (in a bash script, AFTER the option variables are declared):
#
#   stage=1        # First stage to run.
#   stop_stage=100 # Last stage to run.
#   use_gpu=false  # true or false.
#   langs="hi it"  # Space-separated language codes.
#   . utils/parse_options.sh || exit 1
#   # "$@" now holds only the positional arguments.
#
# Why: every recipe script takes its options the same way as Kaldi/ESPnet scripts, and each
# option is declared exactly once (`name=default  # help`), which is also where --help comes from.
#
# Behaviour:
#   --name value | --name=value  sets shell variable `name`; it must already be declared,
#                                otherwise "parse_options.sh: invalid option --name" and exit 1.
#   --name-with-dashes           sets `name_with_dashes`.
#   A variable whose current value is true/false only accepts true/false.
#   --config FILE | --config=FILE
#                                FILE is sourced before any other option is applied, wherever
#                                --config appears among the options (several are sourced in order).
#   --help | -h                  prints $help_message if it is set and non-empty; otherwise prints
#                                the calling script's header comment and one line per declaration
#                                `name=value  # help` found (at column 0) before the line that
#                                sources parse_options.sh, as `--name value  # help`. Exits 0.
#   Parsing stops at the first argument not starting with "--" (or after a literal "--").
#
# Must be sourced WITHOUT arguments (`. utils/parse_options.sh`), so that it can shift the
# caller's positional parameters. Works with and without `set -euo pipefail` in the caller.
# Internal variables are prefixed `__po_` and unset again on return.

# Print the generated (or hand-written) help text of the calling script to stdout.
__po_print_help() {
  local script="$1"
  if [ -n "${help_message:-}" ]; then
    printf '%s\n' "${help_message}"
    return 0
  fi
  if [ ! -f "${script}" ]; then
    echo "parse_options.sh: no help available (cannot read calling script '${script}')"
    return 0
  fi
  # Header: the leading comment block (after an optional shebang), then the declarations.
  # The value/help split honours quotes, so `x="a # b"  # help` keeps "a # b" as the value.
  awk '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    NR == 1 && /^#!/ { next }
    !body && !header && /^[ \t]*$/ { next }
    !body && /^#/ {
      if ($0 !~ /^# *shellcheck /) { line = $0; sub(/^# ?/, "", line); print line; header = 1 }
      next
    }
    !body { body = 1; if (header) print ""; print "Options:" }
    /^[ \t]*(\.|source)[ \t]+[^ \t]*parse_options\.sh/ { exit }
    /^[A-Za-z_][A-Za-z0-9_]*=/ {
      eq = index($0, "="); name = substr($0, 1, eq - 1); rest = substr($0, eq + 1)
      if (name == "help_message") next
      # Find the end of the assignment word (first unquoted blank or ";").
      q = ""; end = length(rest) + 1
      for (i = 1; i <= length(rest); i++) {
        c = substr(rest, i, 1)
        if (q != "") { if (c == "\\" && q == "\"") { i++; continue } if (c == q) q = ""; continue }
        if (c == "\\") { i++; continue }
        if (c == "\"" || c == "\047") { q = c; continue }
        if (c ~ /[ \t;]/) { end = i; break }
      }
      value = substr(rest, 1, end - 1); tail = substr(rest, end)
      if (tail !~ /^[ \t]+#/) next     # no help comment: not an option line
      text = tail; sub(/^[ \t]+#/, "", text); text = trim(text)
      if (value == "") value = "\"\""
      printf "  --%s %s  # %s\n", name, value, text
    }
  ' "${script}"
}

# Which script sourced us: BASH_SOURCE[1] is right even when that script is itself sourced.
__po_script="${BASH_SOURCE[1]:-$0}"

# Pass 1: walk the options exactly as pass 2 will, and source every --config file first.
__po_args=("$@")
__po_i=0
while [ "${__po_i}" -lt "${#__po_args[@]}" ]; do
  __po_arg="${__po_args[${__po_i}]}"
  case "${__po_arg}" in
    --) break ;;
    --help|-h) break ;;
    --config=*|--config)
      if [ "${__po_arg}" = "--config" ]; then
        if [ $((__po_i + 1)) -ge "${#__po_args[@]}" ]; then
          echo "parse_options.sh: option --config needs a file argument" >&2
          exit 1
        fi
        __po_i=$((__po_i + 1))
        __po_file="${__po_args[${__po_i}]}"
      else
        __po_file="${__po_arg#--config=}"
      fi
      if [ ! -r "${__po_file}" ]; then
        echo "parse_options.sh: cannot read config file '${__po_file}'" >&2
        exit 1
      fi
      # Every name=value line must set an option of the script (a typo would be ignored otherwise).
      __po_line=0
      while IFS= read -r __po_text || [ -n "${__po_text}" ]; do
        __po_line=$((__po_line + 1))
        if [[ "${__po_text}" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)= ]]; then
          __po_name="${BASH_REMATCH[1]}"
          if [ -z "${!__po_name+set}" ]; then
            echo "parse_options.sh: ${__po_file}:${__po_line}: unknown option '${__po_name}'" >&2
            exit 1
          fi
        fi
      done < "${__po_file}"
      # shellcheck disable=SC1090
      . "${__po_file}" || { echo "parse_options.sh: error sourcing config '${__po_file}'" >&2; exit 1; }
      ;;
    --*=*) ;;
    --*) __po_i=$((__po_i + 1)) ;;   # skip this option's value
    *) break ;;
  esac
  __po_i=$((__po_i + 1))
done

# Pass 2: apply the options in order, shifting them off the caller's "$@".
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    --help|-h)
      __po_print_help "${__po_script}"
      exit 0
      ;;
    --*)
      if [[ "$1" == *=* ]]; then
        __po_opt="${1%%=*}"
        __po_value="${1#*=}"
        shift
      else
        __po_opt="$1"
        if [ $# -lt 2 ]; then
          echo "parse_options.sh: option ${__po_opt} needs a value" >&2
          exit 1
        fi
        __po_value="$2"
        shift 2
      fi
      if [ "${__po_opt}" = "--config" ]; then
        continue   # already sourced in pass 1
      fi
      __po_name="${__po_opt#--}"
      __po_name="${__po_name//-/_}"
      if ! [[ "${__po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!__po_name+set}" ]; then
        echo "parse_options.sh: invalid option ${__po_opt}" >&2
        exit 1
      fi
      __po_old="${!__po_name}"
      if [ "${__po_old}" = "true" ] || [ "${__po_old}" = "false" ]; then
        if [ "${__po_value}" != "true" ] && [ "${__po_value}" != "false" ]; then
          echo "parse_options.sh: expected \"true\" or \"false\": ${__po_opt} ${__po_value}" >&2
          exit 1
        fi
      fi
      printf -v "${__po_name}" '%s' "${__po_value}"
      ;;
    *) break ;;
  esac
done

unset -f __po_print_help
unset __po_script __po_args __po_i __po_arg __po_file __po_line __po_text __po_opt __po_value __po_name __po_old
true
