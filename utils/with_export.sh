#!/usr/bin/env bash
# utils/with_export.sh MODULE ARGS...: run `python3 -m MODULE ARGS...`, adding `--adapters DIR` for the
# one adapter export under ./exp (stage 14 of ./run.sh) unless ARGS name adapters already.
# The body of ./transcribe.sh and ./demo.sh.
set -euo pipefail
module=$1
shift
given=false
for arg in "$@"; do
    case ${arg} in --adapters|--adapters=*|--adapter|--adapter=*|-h|--help) given=true ;; esac
done
if ! ${given}; then
    shopt -s nullglob
    exports=(exp/*_export_*/manifest.json)
    if [ ${#exports[@]} -ne 1 ]; then
        echo "$0: ${#exports[@]} adapter exports under ${PWD}/exp (stage 14 of ./run.sh writes one):" \
             "name one with --adapters DIR" >&2
        exit 2
    fi
    set -- --adapters "$(dirname "${exports[0]}")" "$@"
fi
exec python3 -m "${module}" "$@"
