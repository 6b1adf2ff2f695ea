#!/usr/bin/env bash
# Recipe for: hi.  ./run.sh --help lists the stages and options of adapt.sh.
set -euo pipefail
./adapt.sh --langs "hi" "$@"
