#!/usr/bin/env bash
# Recipe for: te.  ./run.sh --help lists the stages and options of adapt.sh.
set -euo pipefail
./adapt.sh --langs "te" "$@"
