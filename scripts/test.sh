#!/usr/bin/env bash
# Run the test suite (the default run excludes tests marked slow). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest -m "not slow" "$@"
