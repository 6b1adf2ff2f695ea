#!/usr/bin/env bash
# Copies a subset of a Kaldi data directory.
# Usage: utils/subset_data_dir.sh --utt-list FILE|--spk-list FILE|--first N|--last N <src> <dst>, or <src> <N> <dst>
# The logic and the full rules are in espnet_adapters/bin/subset_data_dir.py (run with --help).
# Works when sourced path.sh has set PATH/PYTHONPATH and also when invoked by path alone:
# the repository root is derived from this script's location, and the project's venv
# python is preferred if it exists.
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"
python=python3
[ -x "${repo}/tools/venv/bin/python" ] && python="${repo}/tools/venv/bin/python"
exec "${python}" -m espnet_adapters.bin.subset_data_dir "$@"
