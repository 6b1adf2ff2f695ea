#!/usr/bin/env bash
# Recipe for: pa.  ./run.sh --help lists the stages and options of adapt.sh.
set -euo pipefail
./adapt.sh --langs "pa" "$@"
