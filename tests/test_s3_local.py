"""scripts/s3-local.sh: the S3 endpoint a user tries the object-storage setup with answers on its port with the
buckets it was asked for."""

import os
import signal
import subprocess
import sys

from helpers import ROOT, free_port
from helpers.s3 import S3Endpoint


def test_the_local_endpoint_serves_the_buckets_it_was_asked_for():
    port = free_port()
    env = dict(os.environ, S3_PORT=str(port), PYTHON=sys.executable)
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "s3-local.sh"), "team-dvc", "team-mlflow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert (
            proc.stdout.readline().strip() == f"S3 endpoint at http://127.0.0.1:{port}; buckets: team-dvc, team-mlflow"
        )
        buckets = S3Endpoint(port).client().list_buckets()["Buckets"]
        assert sorted(b["Name"] for b in buckets) == ["team-dvc", "team-mlflow"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
