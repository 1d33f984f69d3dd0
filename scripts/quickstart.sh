#!/usr/bin/env bash
# Run the whole DVC pipeline on the built-in tiny profile (CPU, no network, a few minutes) as a DVC experiment.
# Extra arguments go to `dvc exp run`, e.g.  scripts/quickstart.sh -S schedule=cosine
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
dvc exp run -S profile=tiny "$@"
echo
cat reports/results.md
echo
echo "pipeline finished in $(( $(date +%s) - start ))s.  Compare experiments:  .venv/bin/python -m ddpm.runner.compare"
echo "Open the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db  (then http://127.0.0.1:5000)"
