#!/usr/bin/env bash
# Run the whole DVC pipeline on the built-in tiny profile (CPU, no network, a few minutes) as a DVC experiment.
# Extra arguments go to `dvc exp run`, e.g.  scripts/quickstart.sh -S schedule=cosine
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
ddpm profile tiny >/dev/null  # the workspace's default profile from now on: see `ddpm profile`
dvc exp run -S profile=tiny "$@"
echo
cat reports/results.md
echo
echo "pipeline finished in $(( $(date +%s) - start ))s.  Compare experiments:  .venv/bin/ddpm compare"
echo "Vary it (tiny is now this workspace's profile):  source .venv/bin/activate; dvc exp run -S schedule=cosine"
ddpm mlflow  # the `mlflow ui` command and the experiment's page
