#!/usr/bin/env bash
# Run the whole test suite, creating the environment first (tools/install.sh, idempotent).
#   tools/test.sh                 # shell tests (bats), then Python tests (pytest) incl. the recipe e2e;
#                                 # the 30 slowest tests are listed at the end (where CI time goes)
#   tools/test.sh -k scoring      # extra arguments go to pytest
set -euo pipefail
main_root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "${main_root}"
tools/install.sh
. ./path.sh
echo "== bats test/shell"
bats test/shell
echo "== pytest test/python"
exec python3 -m pytest -ra --durations=30 test/python "$@"
