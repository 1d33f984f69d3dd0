#!/usr/bin/env bash
# What CI runs: the code checks (scripts/check.sh), then the test suite: everything but the tests marked slow,
# except the SIGKILL fault suite (slow-marked too, but part of every run and of CI), with the 15 slowest tests
# listed at the end. Extra arguments go to pytest; a later -m replaces the selection, e.g.
#   scripts/test.sh -m "not slow and not e2e and not faults"   # the quick tier (~7 min on 2 cores)
#   scripts/test.sh -m slow                                    # the slow tests
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
bash scripts/check.sh
exec python -m pytest -m "not slow or faults" --durations=15 "$@"
