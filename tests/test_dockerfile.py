"""The Dockerfile: a pinned base image, a non-root user, no secrets baked in (static checks; no Docker engine)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in DOCKERFILE.splitlines() if line.upper().startswith(name + " ")]


def test_base_image_is_pinned_to_an_exact_tag():
    (base,) = instructions("FROM")
    image, _, tag = base.partition(":")
    assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+-", tag), base  # e.g. 3.11.7-slim-bookworm


def test_runs_as_a_non_root_user():
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0"), users
    assert "useradd" in DOCKERFILE


def test_no_secrets_in_the_image():
    for line in instructions("ENV") + instructions("ARG"):
        assert not re.search(r"(SECRET|TOKEN|PASSWORD|API_KEY|ACCESS_KEY)", line, re.I), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", "*.pem", "*.key", ".netrc", ".git-credentials", "mlflow.db", "mlflow-pending", "data"):
        assert pattern in ignored, f".dockerignore lacks {pattern}"
