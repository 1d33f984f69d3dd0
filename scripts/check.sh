#!/usr/bin/env bash
# The code checks CI and the pre-commit hook run: lint, format and types (strict on the diffusion core), and that
# dvc.yaml's code deps are the stage scripts' imports. `scripts/check.sh --fix` applies ruff's fixes and format.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
paths=(src pipeline tests scripts benchmarks)
if [ "${1:-}" = "--fix" ]; then
  ruff check --fix "${paths[@]}"
  ruff format "${paths[@]}"
  python scripts/dvc_deps.py
  exit 0
fi
status=0
ruff check "${paths[@]}" || status=1
ruff format --check "${paths[@]}" || status=1
mypy || status=1
python scripts/dvc_deps.py --check || status=1
exit $status
