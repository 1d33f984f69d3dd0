"""A live MLflow tracking server on 127.0.0.1, started by scripts/mlflow-server.sh (SQLite backend, or a database
URL such as PostgreSQL's; artifacts proxied into a folder of the test's or an S3 bucket) as a team would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import ROOT, free_port


class MlflowServer:
    """``start()`` / ``stop()`` (SIGKILL, as a crash) the server on one port and store; ``uri`` for clients."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        backend: str | None = None,
        artifacts: str | None = None,
        env: dict[str, str] | None = None,
    ):
        """``artifacts``: where the server stores them (default: ``folder``/artifacts), e.g. an ``s3://`` URL with
        ``env`` holding the credentials and endpoint the server reaches it with (only the server gets them)."""
        self.folder, self.port = Path(folder), port or free_port()
        self.backend = backend or f"sqlite:///{self.folder / 'mlflow.db'}"
        self.artifacts, self.env = artifacts or str(self.folder / "artifacts"), env or {}
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> MlflowServer:
        env = dict(
            os.environ,
            **self.env,
            MLFLOW_BACKEND=self.backend,
            MLFLOW_ARTIFACTS=self.artifacts,
            MLFLOW_PORT=str(self.port),
            MLFLOW=str(Path(sys.executable).parent / "mlflow"),
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - the server's, closed with it
        self.proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "mlflow-server.sh")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as res:
                    if res.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise AssertionError(
            f"mlflow server not up after {timeout}s: {(self.folder / 'server.log').read_text()[-3000:]}"
        )

    def stored(self, suffix: str) -> list[str]:
        """The artifacts the server stored whose names end with ``suffix``: paths in its folder, or its bucket's
        keys."""
        if "://" not in self.artifacts:
            return sorted(str(p) for p in Path(self.artifacts).rglob(f"*{suffix}"))
        import boto3  # noqa: PLC0415 - only a server with an S3 store needs it

        bucket, _, prefix = self.artifacts.removeprefix("s3://").partition("/")
        client = boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(suffix))

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log (for an assertion's message)."""
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its workers
            self.proc.wait(timeout=30)
        self.proc = None
