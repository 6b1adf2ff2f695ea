#!/usr/bin/env bash
# Transcribe audio files or folders with a run's language adapters, routed by its LID
# (README "Use your adapters"; every option: ./transcribe.sh --help).
#   ./transcribe.sh [--adapters exp/<model>_export_<tag>] [--route hard|soft|threshold|base | --lang hi]
#                   [--out_dir transcripts] FILE_OR_FOLDER ...
# Without --adapters / --adapter: the one export under exp/ of the current directory (a recipe
# dir: the repository root or egs2/<language>/adapt1, where stage 14 of ./run.sh wrote it).
set -euo pipefail
main_root=$(dirname "$(readlink -f "$0")")
# shellcheck source=path.sh
. "${main_root}/path.sh"
[ -x "${main_root}/tools/venv/bin/python3" ] || "${main_root}/tools/install.sh"
exec "${main_root}/utils/with_export.sh" espnet_adapters.bin.transcribe "$@"
