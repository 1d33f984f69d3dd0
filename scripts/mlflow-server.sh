#!/usr/bin/env bash
# A shared MLflow tracking server for a team or a cluster: runs and the registry in a SQL database, artifacts
# (models, figures, reports) proxied by the server into one folder or bucket, so clients need only its address:
#   scripts/mlflow-server.sh                       # SQLite in ./mlflow-server/, on 127.0.0.1:5000
#   MLFLOW_BACKEND=postgresql://mlflow@db-host/mlflow MLFLOW_ARTIFACTS=s3://bucket/mlflow \
#     MLFLOW_HOST=0.0.0.0 scripts/mlflow-server.sh
# then on every machine that runs stages: export MLFLOW_TRACKING_URI=http://<server>:5000 (docs/mlflow.md).
# An s3:// store is written by the server with its own credentials from the environment (AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY; AWS_ENDPOINT_URL for a store other than AWS); clients need none.
# A PostgreSQL backend needs the psycopg driver in the server's environment (pip install 'psycopg[binary]').
# Extra arguments go to `mlflow server` (e.g. --workers 4).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HERE=$PWD/mlflow-server
backend=${MLFLOW_BACKEND:-sqlite:///$HERE/mlflow.db}
artifacts=${MLFLOW_ARTIFACTS:-$HERE/artifacts}
case "$backend" in sqlite:///*) mkdir -p "$(dirname "${backend#sqlite:///}")" ;; esac
case "$artifacts" in *://*) ;; *) mkdir -p "$artifacts" ;; esac
MLFLOW=${MLFLOW:-$(command -v mlflow || echo .venv/bin/mlflow)}
# MLflow's background job workers serve its GenAI features (about eight processes of ~230 MB): off unless asked.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
exec "$MLFLOW" server --backend-store-uri "$backend" --serve-artifacts --artifacts-destination "$artifacts" \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}" "$@"
