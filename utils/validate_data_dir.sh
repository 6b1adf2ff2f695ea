#!/usr/bin/env bash
# Checks a Kaldi data directory; prints every problem as "file:LINE: message".
# Usage: utils/validate_data_dir.sh [--no-text] [--no-feats] [--check-audio] <data-dir>
# The logic and the full rules are in espnet_adapters/bin/validate_data_dir.py (run with --help).
exec "$(dirname "$(readlink -f "$0")")/run_python.sh" espnet_adapters.bin.validate_data_dir "$@"
