#!/usr/bin/env bash
# The live routing demo: a local web page to upload or record audio and see the adapters routed
# (README "Use your adapters"; every option: ./demo.sh --help). Then open http://127.0.0.1:8000/
#   ./demo.sh [--adapters exp/<model>_export_<tag>] [--port 8000] [--host 0.0.0.0]
# Without --adapters / --adapter: the one export under exp/ of the current directory (a recipe
# dir: the repository root or egs2/<language>/adapt1, where stage 14 of ./run.sh wrote it).
set -euo pipefail
main_root=$(dirname "$(readlink -f "$0")")
# shellcheck source=path.sh
. "${main_root}/path.sh"
[ -x "${main_root}/tools/venv/bin/python3" ] || "${main_root}/tools/install.sh"
exec "${main_root}/utils/with_export.sh" espnet_adapters.bin.demo "$@"
