#!/usr/bin/env bash
# Copies a subset of a Kaldi data directory.
# Usage: utils/subset_data_dir.sh --utt-list FILE|--spk-list FILE|--first N|--last N <src> <dst>, or <src> <N> <dst>
# The logic and the full rules are in espnet_adapters/bin/subset_data_dir.py (run with --help).
exec "$(dirname "$(readlink -f "$0")")/run_python.sh" espnet_adapters.bin.subset_data_dir "$@"
