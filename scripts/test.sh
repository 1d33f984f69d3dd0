#!/usr/bin/env bash
# Run the test suite: everything but the tests marked slow, except the SIGKILL fault suite (slow-marked too, but
# part of every run and of CI). Extra arguments go to pytest (e.g. -m slow for the slow tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest -m "not slow or faults" "$@"
