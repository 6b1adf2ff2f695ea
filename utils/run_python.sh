#!/usr/bin/env bash
# Run a module of this repository with the project's Python:
#   utils/run_python.sh espnet_adapters.bin.validate_data_dir [args...]
# Used by the Kaldi-named wrappers in utils/ so that they work both after
# `. ./path.sh` and when invoked by path alone: the repository root is derived
# from this script's location, and tools/venv's python is preferred if it exists.
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"
python=python3
[ -x "${repo}/tools/venv/bin/python" ] && python="${repo}/tools/venv/bin/python"
exec "${python}" -m "$@"
