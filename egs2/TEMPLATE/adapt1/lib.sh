# shellcheck shell=bash
# Helpers of adapt.sh and the stage files (whisper_stages.sh, owsm_stages.sh), sourced by
# adapt.sh before its options: logging and stage control, .done markers, job launching and
# merging, the recipe's layout (sets, adapter dirs, the decode plan) and the results table.
# Functions only; they read adapt.sh's options when called.
#
# Every expansion is quoted (a recipe may live in a path with a space), except two kinds
# of deliberate word splitting: a launcher of cmd.sh (${train_cmd}, ${decode_cmd},
# ${cuda_cmd}, job_cmd's output) is a command line, as in Kaldi and ESPnet, and a list of
# words (a list option such as --langs "hi it", or all_sets' set names) is split in a `for`
# header.

# --- Logging and stage control -------------------------------------------------------------

# log MESSAGE...: ESPnet's log line: time, (script:line:function) of the caller, MESSAGE.  A
# caller in a sourced file is named after the script: (adapt.sh:whisper_stages.sh:42:stage4).
# log_depth=2 log ...: the caller's caller (for a helper that logs on its caller's behalf).
log() {
    local depth=${log_depth:-1} main=${0##*/} src where
    src=${BASH_SOURCE[depth]##*/}
    where="${src}:${BASH_LINENO[depth - 1]}:${FUNCNAME[depth]}"
    [ "${src}" = "${main}" ] || where="${main}:${where}"
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${where}) $*"
}
# skip_stage N REASON: says that stage N, selected by --stage/--stop_stage, does not run, and why.
skip_stage() { log_depth=2 log "Skip stage $1: $2"; }
# run_stage N: stage N is selected by --stage, --stop_stage and --skip_stages.
run_stage() {
    [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] \
        && ! [[ " ${skip_stages} " =~ [[:space:]]$1[[:space:]] ]] || return 1
    stage_clock "$1"
}

# --- wall time per stage: a row per stage run appended to ${expdir}/log/timing.tsv
# (run_started, stage, seconds, status), this run's rows printed at the end (timing_report).
clock_stage="" clock_start=0 run_started=$(date '+%Y-%m-%dT%H:%M:%S')
# stage_clock N: stage N starts now; the stage before it ends.
stage_clock() {
    [ "${clock_stage}" != "$1" ] || return 0
    stage_clock_close ok
    clock_stage=$1 clock_start=${SECONDS}
}
# stage_clock_close STATUS: the running stage (if any) ends with STATUS (ok, failed).
stage_clock_close() {
    [ -n "${clock_stage}" ] && [ -n "${expdir:-}" ] || return 0
    local table=${expdir}/log/timing.tsv
    mkdir -p "${expdir}/log"
    [ -s "${table}" ] || printf 'run_started\tstage\tseconds\tstatus\n' > "${table}"
    printf '%s\t%s\t%s\t%s\n' "${run_started}" "${clock_stage}" "$((SECONDS - clock_start))" "$1" >> "${table}"
    clock_stage=""
}
# on_exit STATUS (adapt.sh's EXIT trap): a run that ends with a non-zero status says so, with
# the stage it was in, even when the failing command said nothing (set -e); timing.tsv marks
# that stage failed.
on_exit() {
    [ "$1" -ne 0 ] || return 0
    local where=${clock_stage:+ in stage ${clock_stage}}
    stage_clock_close failed
    log "Error: ended with exit code $1${where} (the last lines above, and the logs they name, say why)" >&2
}
# exit_traps: adapt.sh's traps.  EXIT: on_exit.  A run stopped by a signal (Ctrl-C, kill, a
# scheduler's TERM, a closed terminal) exits with 128 + the signal's number, so on_exit reports it and
# timing.tsv marks the stage failed; without these bash runs the EXIT trap with status 0 and the
# killed stage would vanish from timing.tsv.  (bash runs a trap once the foreground command ends.)
exit_traps() {
    trap 'on_exit $?' EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
# timing_report: close the last stage and log this run's wall time per stage.
timing_report() {
    stage_clock_close ok
    [ -s "${expdir}/log/timing.tsv" ] || return 0
    log "Wall time per stage (${expdir}/log/timing.tsv):"
    awk -F '\t' -v run="${run_started}" '$1 == run { printf "  stage %-3s %6d s  %s\n", $2, $3, $4 }' \
        "${expdir}/log/timing.tsv" | while IFS= read -r line; do log_depth=2 log "${line}"; done
}
# lock_recipe: one run at a time in this recipe dir (two would write the same data/, dump/ and
# exp/): the second refuses, naming the first.  The lock (flock on .adapt.lock) is held by this
# shell and every job it starts, so it ends only when the run and all its jobs have ended (even
# after kill -9 of the script, the jobs still writing keep it).  A lock still held is waited for
# up to 20 s first: the processes of a run just killed take a moment to exit, and re-running at
# once is what a user does.
lock_recipe() {
    local lock=.adapt.lock
    exec {lock_fd}>> "${lock}"
    if ! flock -n "${lock_fd}"; then
        log "Another run holds ${lock} ($(cat "${lock}" 2>/dev/null)); waiting up to 20 s for it to end"
        if ! flock -w 20 "${lock_fd}"; then
            log "Error: another run is using $(pwd) ($(cat "${lock}" 2>/dev/null || echo "${lock}")); wait for it to end (two runs would write the same data/, dump/ and exp/)"
            exit 1
        fi
    fi
    printf 'pid %s, started %s: %s\n' "$$" "$(date '+%Y-%m-%dT%H:%M:%S')" "${run_args}" > "${lock}"
}
# --- options: checked before anything runs (a typo is an error, not "Successfully finished")

# option_error NAME VALUE WHAT: the option's value is not WHAT; the run stops (exit 2).
option_error() { log_depth=2 log "Error: --$1 '$2': expected $3"; exit 2; }
# check_options: adapt.sh's options have the types and values the stages need (the config files are
# checked by espnet_adapters.bin.check_configs once the venv is there).
check_options() {
    local name value item
    for name in stage stop_stage ngpu train_utts dev_utts test_utts seed fs cs_utts route_top_k \
        owsm_tiny_epochs owsm_vocab_size; do
        [[ "${!name}" =~ ^[0-9]+$ ]] || option_error "${name}" "${!name}" "a whole number"
    done
    for name in nj inference_nj num_threads train_num_threads num_nodes; do
        [[ "${!name}" =~ ^[1-9][0-9]*$ ]] || option_error "${name}" "${!name}" "a whole number >= 1"
    done
    for name in beam_size batch_size max_new_tokens; do
        [ -z "${!name}" ] || [[ "${!name}" =~ ^[1-9][0-9]*$ ]] || option_error "${name}" "${!name}" "a whole number >= 1, or empty"
    done
    for name in skip_stages lora_ranks lid_crops; do
        for item in ${!name}; do
            [[ "${item}" =~ ^[0-9]+$ ]] || option_error "${name}" "${!name}" "whole numbers separated by spaces"
        done
    done
    for name in min_dur max_dur owsm_maxlenratio speed_perturb_factors route_taus cs_tolerance \
        cs_select_tolerance; do
        for item in ${!name}; do
            [[ "${item}" =~ ^[0-9]*\.?[0-9]+$ ]] || option_error "${name}" "${!name}" "numbers separated by spaces"
        done
    done
    for name in decode_base cross_eval; do
        [[ "${!name}" =~ ^(true|false)$ ]] || option_error "${name}" "${!name}" "true or false"
    done
    [[ "${decode_lang}" =~ ^(forced|auto)$ ]] || option_error decode_lang "${decode_lang}" "forced or auto"
    for item in ${test_sets}; do
        [[ "${item}" =~ ^[a-z0-9]+(_[a-z0-9]+)*$ ]] && [ "${item}" != train ] && [ "${item}" != dev ] \
            || option_error test_sets "${test_sets}" "split names like test, separated by spaces (not train or dev)"
        [[ "${item}" != *_other ]] || [ "${corpus}" = synth ] \
            || option_error test_sets "${test_sets}" "no ${item} with --corpus ${corpus} (<split>_other: --corpus synth only)"
    done
    [ -n "${test_sets// /}" ] || option_error test_sets "${test_sets}" "one or more split names"
    [ -n "${langs// /}" ] || option_error langs "${langs}" "one or more language codes (e.g. \"hi it\")"
    for name in langs eval_langs; do
        for item in ${!name}; do
            [[ "${item}" =~ ^[a-z]{2,3}$ ]] || option_error "${name}" "${!name}" "ISO 639-1 codes like hi, separated by spaces"
        done
    done
    [ "${stage}" -le "${stop_stage}" ] || option_error stage "${stage}" "a stage <= --stop_stage ${stop_stage}"
}
# config_field KEY: a value check_configs printed once per run (config_fields): KEY of --lora_config
# (where, encoder_top: its LoraSpec default where the file is silent) or other_langs.
config_field() { sed -n "s/^$1=//p" <<< "${config_fields}"; }

# multilingual: --langs has two or more languages, as language ID, routing and the analysis (9-13) need.
multilingual() { [ "$(wc -w <<< "${langs}")" -ge 2 ]; }
# multilingual_stage N WHAT: run_stage N for a stage that compares languages (9-13); with
# one language in --langs, stage N is skipped and says so.
multilingual_stage() {
    run_stage "$1" || return 1
    multilingual && return
    log_depth=2 log "Skip stage $1: $2 needs two or more --langs"
    return 1
}

# --- .done markers: DIR/.done holds the signature (inputs + options) of the run that completed DIR

is_done() { [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]; }
# up_to_date LABEL DIR SIGNATURE: true (and says so) when DIR was completed with SIGNATURE.
up_to_date() {
    is_done "$2" "$3" || return 1
    log_depth=2 log "  $1: up to date"
}
mark_done() { printf '%s\n' "$2" > "$1/.done.tmp" && mv "$1/.done.tmp" "$1/.done"; }
checksum() { cat "$@" | md5sum | cut -c1-16; }
# input_sig DIR STAGE: the signature of DIR, an input that stage STAGE made, for the signature of
# the stage that reads it (so a re-made input re-makes what was made from it).  An input without
# .done (never made, or its stage was interrupted) stops the run, naming the stage to re-run.
# Call it in an assignment of its own (var=$(input_sig ...)): set -e sees its failure only there.
input_sig() {
    if [ ! -f "$1/.done" ]; then
        log_depth=2 log "Error: $1 is missing or incomplete (no $1/.done): run stage $2 for it first (--stage $2)" >&2
        return 1
    fi
    checksum "$1/.done"
}
# audio_stamp DIR: size and modification time (ns) of every file DIR/wav.scp reads (an audio file or
# an ark; a command "... |" is in wav.scp's own checksum), so that audio replaced under the same
# name (another recording of the same length, a re-made ark) changes the signature of what reads
# it.  A missing file adds nothing: the stage reading it names it.
audio_stamp() {
    awk '$NF !~ /[|]$/ { f = $2; sub(/:[0-9]+$/, "", f); if (!(f in seen)) { seen[f]; print f } }' "$1/wav.scp" \
        | { xargs -r -d '\n' stat -c '%s %.9Y' 2> /dev/null || true; } | md5sum | cut -c1-16
}

# --- Jobs ------------------------------------------------------------------------------------

# job_cmd GPUS CPU_CMD: the launcher of a job that uses GPUS GPUs when --ngpu > 0
# ("${cuda_cmd} --gpu GPUS"), and CPU_CMD (one of cmd.sh's launchers) otherwise.
job_cmd() {
    if [ "${ngpu}" -gt 0 ]; then echo "${cuda_cmd} --gpu $1"; else echo "$2"; fi
}
# quietly LOG COMMAND...: runs COMMAND (a quick step of the script itself, not a job) with
# its stderr, its log lines, in LOG; they are shown only when it fails.  Its stdout is kept.
quietly() {
    local log_file=$1 status=0
    shift
    mkdir -p "$(dirname "${log_file}")"
    "$@" 2> "${log_file}" || status=$?
    [ "${status}" -eq 0 ] || cat "${log_file}" >&2
    return "${status}"
}
# split_keys SCP DIR NJ: writes DIR/keys.1..N (N = min(NJ, lines)) and sets _nj.
split_keys() {
    local lines n keys=()
    lines=$(wc -l < "$1")
    _nj=$(( $3 < lines ? $3 : lines ))
    mkdir -p "$2" && rm -f "$2"/keys.*
    for n in $(seq "${_nj}"); do keys+=("$2/keys.${n}"); done
    split_scp.pl "$1" "${keys[@]}"
}
# job_dirs PREFIX N: PREFIX1 .. PREFIXN, one a line (the output dirs of N jobs; read with mapfile).
job_dirs() {
    local n
    for n in $(seq "$2"); do echo "$1${n}"; done
}
# merge_jobs NAME OUT DIR...: concatenates DIR/NAME of every job into OUT (sorted, atomic).
merge_jobs() {
    local name=$1 out=$2 d
    shift 2
    for d in "$@"; do cat "${d}/${name}"; done | sort -k1,1 > "${out}.tmp"
    mv "${out}.tmp" "${out}"
}
# pool_sets OUT SRC SPLIT NAME...: the NAME files of SRC/<lang>_SPLIT of every language
# merged into OUT/NAME (sorted, atomic).
pool_sets() {
    local out=$1 src=$2 split=$3 name dirs
    shift 3
    mapfile -t dirs < <(each_lang "${src}/<lang>_${split}")
    mkdir -p "${out}"
    for name in "$@"; do merge_jobs "${name}" "${out}/${name}" "${dirs[@]}"; done
}

# decode_jobs DIR SET SIGNATURE PROGRAM [OPTION ...]: unless DIR is up to date with SIGNATURE,
# decodes ${dumpdir}/raw/SET into DIR with --inference_nj jobs of espnet_adapters.bin.PROGRAM
# (any of our decoders: --data_dir, --keys and --out_dir are added here) and merges their
# hyp, hyp_lang[, routing].
decode_jobs() {
    local dir=$1 set_name=$2 sig=$3 program=$4 outs name _cmd
    shift 4
    local data=${dumpdir}/raw/${set_name}
    up_to_date "${dir}" "${dir}" "${sig}" && return
    mkdir -p "${dir}" && rm -f "${dir}/.done"
    split_keys "${data}/wav.scp" "${dir}/logdir" "${inference_nj}"
    _cmd=$(job_cmd 1 "${decode_cmd}")
    ${_cmd} --num-threads "${num_threads}" JOB=1:"${_nj}" "${dir}/logdir/decode.JOB.log" \
        python3 -m "espnet_adapters.bin.${program}" --data_dir "${data}" \
            --keys "${dir}/logdir/keys.JOB" --out_dir "${dir}/logdir/output.JOB" "$@"
    mapfile -t outs < <(job_dirs "${dir}/logdir/output." "${_nj}")
    for name in hyp hyp_lang routing; do
        [ ! -f "${dir}/logdir/output.1/${name}" ] || merge_jobs "${name}" "${dir}/${name}" "${outs[@]}"
    done
    mark_done "${dir}" "${sig}"
    log "  ${dir}: $(wc -l < "${dir}/hyp") hypotheses"
}

# --- The recipe's layout ---------------------------------------------------------------------

# lang_test_sets LANG: the test sets of LANG.  A language of --langs: --test_sets, without the
# other synthesizer's (*_other) when they are the default's and it has no voice for LANG; an
# evaluated-only language (--eval_langs): the first of --test_sets.
lang_test_sets() {
    local tset kept=()
    if [[ " ${langs} " != *" $1 "* ]]; then
        echo "${test_sets%% *}"
        return
    fi
    for tset in ${test_sets}; do
        [[ "${tset}" == *_other ]] && ${test_sets_auto:-false} && [[ " ${other_langs:-} " != *" $1 "* ]] && continue
        kept+=("${tset}")
    done
    echo "${kept[*]}"
}
# all_sets: the sets that exist after stage 3, for every language, one a line (an evaluated-only
# language has only the first of --test_sets).
all_sets() {
    local lang tset
    for lang in ${langs}; do
        echo "${lang}_${train_split}"
        echo "${lang}_dev"
        for tset in $(lang_test_sets "${lang}"); do echo "${lang}_${tset}"; done
    done
    for lang in ${eval_langs}; do echo "${lang}_$(lang_test_sets "${lang}")"; done
}
# each_lang TEMPLATE...: every TEMPLATE with <lang> replaced by each language of --langs,
# one a line, language by language (hi's TEMPLATEs, then it's ...); read them with mapfile.
each_lang() {
    local lang pattern
    for lang in ${langs}; do
        for pattern in "$@"; do echo "${pattern//<lang>/${lang}}"; done
    done
}
# adapter_exp LANG [TAG]: the experiment dir of LANG's adapter.
adapter_exp() { echo "${expdir}/${model_tag}_lora_$1_${2:-${adapter_tag}}"; }
# adapter_variants: one "TAG RANK LORA_CONFIG" line per adapter each language gets: one per
# --lora_ranks rank, whose config is --lora_config at that rank with the same alpha/r (written
# by adapt.sh), or just --lora_config (RANK "-").  LORA_CONFIG is last: a path may hold spaces.
adapter_variants() {
    local rank tag
    if [ -z "${lora_ranks}" ]; then
        echo "${adapter_tag} - ${lora_config}"
        return
    fi
    for rank in ${lora_ranks}; do
        # r32_qv_dec -> r8_qv_dec; any other tag gets _r8 appended.
        if [[ "${adapter_tag}" =~ ^r[0-9]+_ ]]; then tag="r${rank}_${adapter_tag#*_}"; else tag="${adapter_tag}_r${rank}"; fi
        echo "${tag} ${rank} ${expdir}/conf/lora/${tag}.yaml"
    done
}
# decode_plan: the decode dirs of stage 7, one "model_tag set lang adapter_dir" line each.
# Adapters on other languages (--cross_eval) and evaluated-only languages: the first test set.
decode_plan() {
    local lang tset other tag dir
    for lang in ${langs} ${eval_langs}; do
        for tset in $(lang_test_sets "${lang}"); do
            ! ${decode_base} || echo "${model_tag} ${lang}_${tset} ${lang}"
            while read -r tag _; do
                for other in ${langs}; do
                    [ "${other}" = "${lang}" ] || { ${cross_eval} && [ "${tset}" = "${test_sets%% *}" ]; } || continue
                    dir=$(adapter_exp "${other}" "${tag}")
                    if [ ! -d "${dir}/adapter" ]; then
                        if [ -f "${dir}/train.done" ]; then
                            log "  ${dir}: no adapter (the base model was better on dev): not decoded on ${lang}_${tset}" >&2
                        else
                            log "  ${dir}: no adapter yet (stage 6 not run): not decoded on ${lang}_${tset}" >&2
                        fi
                        continue
                    fi
                    echo "$(basename "${dir}") ${lang}_${tset} ${lang} ${dir}/adapter"
                done
            done < <(adapter_variants)
        done
    done
}

# --- Results ---------------------------------------------------------------------------------

# write_results: ${results} from every scores.json, plus the routing report(s) of stage 12 and the
# adapter analysis of stage 13.
# Each model's run leaves its command line in ${expdir}/log/command.<model>, without stage
# selection (stages are resumable: the whole command reproduces everything); the header
# lists them all (a Whisper and an OWSM run of one recipe share the tables).
write_results() {
    local extra=() commands=() file args=() i line
    for ((i = 0; i < ${#orig_args[@]}; i++)); do
        case ${orig_args[i]} in
            --stage|--stop_stage|--skip_stages) i=$((i + 1)) ;;
            *) args+=("${orig_args[i]}") ;;
        esac
    done
    line=$(printf '%q ' "${0#"${PWD}/"}" "${args[@]}")
    mkdir -p "${expdir}/log" && printf '%s\n' "${line% }" > "${expdir}/log/command.${model_tag}"
    for file in "${expdir}"/log/command.*; do
        commands+=(--command "$(cat "${file}")")
    done
    : > "${expdir}/results_extra.md"
    # The adapters' training: dev curves from step 0 (the base model), cost, the learning-curve PNGs
    # (our trainer's runs: ESPnet's OWSM cells log their own curves and have no "evals").
    local runs=()
    mapfile -t runs < <(grep -l '"evals"' "${expdir}"/*_lora_*/train_stats.json 2>/dev/null || true)
    if [ ${#runs[@]} -gt 0 ]; then
        python3 -m espnet_adapters.bin.train_summary "${runs[@]}" \
            --heading "## Adapter training (dev set; step 0 = the base model)" --metric dev_wer --metric dev_cer \
            --metric dev_corr --link_dir "$(dirname "${results}")" >> "${expdir}/results_extra.md" \
            2> "${expdir}/log/train_summary.log"
    fi
    if compgen -G "${expdir}/*_routing_*/routing.md" > /dev/null; then
        cat "${expdir}"/*_routing_*/routing.md "${expdir}"/*_routing_*/codeswitch/report/codeswitch.md \
            2>/dev/null >> "${expdir}/results_extra.md" || true
    fi
    if compgen -G "${expdir}/*_analysis_*/analysis.md" > /dev/null; then
        cat "${expdir}"/*_analysis_*/analysis.md >> "${expdir}/results_extra.md"
    fi
    [ ! -s "${expdir}/results_extra.md" ] || extra=(--extra_md "${expdir}/results_extra.md")
    [ ! -s "${expdir}/log/timing.tsv" ] || extra+=(--timing "${expdir}/log/timing.tsv")
    ${train_cmd} "${expdir}/log/make_results.log" \
        python3 -m espnet_adapters.bin.make_results --exp_dir "${expdir}" --out "${results}" \
            "${commands[@]}" "${extra[@]}"
    log "Results in ${results}"
}
