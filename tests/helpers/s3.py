"""A loopback S3 endpoint: moto's server mode (``ThreadedMotoServer``) on 127.0.0.1, in memory, for as long as the
block runs. Clients find it and sign their requests only through the environment (``endpoint.env``: the
``AWS_*`` variables boto3, s3fs, DVC and MLflow's server read), as a team's clients would; the secret key is made
up per endpoint so that a test can look for it in every file, log and run. moto's servers in one process share one
store, so each endpoint names its buckets with a suffix of its own."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from . import free_port

_REQUEST = re.compile(r'"([A-Z]+) /([^ ?]+)\S* HTTP/[\d.]+" (\d+)')
_COLOUR = re.compile(r"\x1b\[[\d;]*m")  # the request log colours some lines


class S3Endpoint(logging.Handler):
    """The endpoint's ``url``, the environment that reaches it (``env``), and every request it answered
    (``requests``: method, "bucket/key", status), read from the server's request log."""

    def __init__(self, port: int):
        super().__init__(logging.INFO)
        self.url = f"http://127.0.0.1:{port}"
        self.secret = f"ddpm-test-secret-{secrets.token_hex(8)}"
        self.env = {
            "AWS_ACCESS_KEY_ID": "ddpm-test-key",
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.url,
        }
        self.requests: list[tuple[str, str, int]] = []
        self.suffix = secrets.token_hex(4)
        self.buckets: dict[str, str] = {}  # name asked for → the bucket's name on the server

    def emit(self, record: logging.LogRecord) -> None:
        match = _REQUEST.search(_COLOUR.sub("", record.getMessage()))
        if match:
            self.requests.append((match[1], match[2], int(match[3])))

    def gets(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` ("bucket/folder/") fetched with a successful GET, in order."""
        return [
            key for method, key, status in self.requests if method == "GET" and key.startswith(prefix) and status < 300
        ]

    def client(self):
        """A boto3 S3 client for this endpoint."""
        import boto3  # noqa: PLC0415 - only the tests that start an endpoint need it

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.secret,
        )

    def bucket(self, name: str) -> str:
        """Create this endpoint's bucket ``name`` (on the server: ``self.buckets[name]``); its ``s3://`` URL."""
        self.buckets[name] = f"{name}-{self.suffix}"
        self.client().create_bucket(Bucket=self.buckets[name])
        return f"s3://{self.buckets[name]}"


@contextmanager
def s3_endpoint() -> Iterator[S3Endpoint]:
    """A fresh, empty endpoint on a free port while the block runs."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    port = free_port()
    endpoint = S3Endpoint(port)
    log = logging.getLogger("werkzeug")  # the server's request log: one line per request
    log.setLevel(logging.INFO)
    log.addHandler(endpoint)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield endpoint
    finally:
        server.stop()
        log.removeHandler(endpoint)
