#!/usr/bin/env bash
# A local S3-compatible endpoint to try the object-storage setup on one machine (docs/cluster.md): moto's S3
# server on 127.0.0.1, in memory (what it holds is gone when it stops), with the buckets named as arguments:
#   scripts/s3-local.sh team-dvc team-mlflow          # on 127.0.0.1:9000 (S3_PORT=9100 for another port)
# In every shell that uses it (the endpoint accepts any key; real credentials belong in the environment or
# ~/.aws, never in params.yaml or .dvc/config):
#   export AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_DEFAULT_REGION=us-east-1 \
#     AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
# Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
port=${S3_PORT:-9000}
url=http://127.0.0.1:$port
"$(dirname "$PY")/moto_server" -H 127.0.0.1 -p "$port" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT INT TERM
"$PY" - "$url" "$@" <<'PY'
import sys, time
import boto3
url, buckets = sys.argv[1], sys.argv[2:]
client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="local",
                      aws_secret_access_key="local")
for _ in range(300):
    try:
        client.list_buckets()
        break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit(f"error: s3-local.sh: the S3 server did not answer at {url}")
for name in buckets:
    client.create_bucket(Bucket=name)
print(f"S3 endpoint at {url}; buckets: {', '.join(buckets) or 'none'}", flush=True)
PY
wait "$server"
