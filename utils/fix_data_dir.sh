#!/usr/bin/env bash
# Sorts and repairs a Kaldi data directory in place (originals in <data-dir>/.backup).
# Usage: utils/fix_data_dir.sh <data-dir>
# The logic and the full rules are in espnet_adapters/bin/fix_data_dir.py (run with --help).
# Works when sourced path.sh has set PATH/PYTHONPATH and also when invoked by path alone:
# the repository root is derived from this script's location, and the project's venv
# python is preferred if it exists.
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"
python=python3
[ -x "${repo}/tools/venv/bin/python" ] && python="${repo}/tools/venv/bin/python"
exec "${python}" -m espnet_adapters.bin.fix_data_dir "$@"
