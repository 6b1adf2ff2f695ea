#!/usr/bin/env bash
# Sorts and repairs a Kaldi data directory in place (originals in <data-dir>/.backup).
# Usage: utils/fix_data_dir.sh <data-dir>
# The logic and the full rules are in espnet_adapters/bin/fix_data_dir.py (run with --help).
exec "$(dirname "$(readlink -f "$0")")/run_python.sh" espnet_adapters.bin.fix_data_dir "$@"
