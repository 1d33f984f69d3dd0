#!/usr/bin/env bash
# Re-resolve requirements.lock from pyproject.toml (and its dev extra): every package pinned, with the SHA-256 of
# each of its files, for Linux x86-64 and CPython 3.11–3.13 ([tool.uv] environments in pyproject.toml). Run it
# after changing a dependency; scripts/ensure-venv.sh, CI and the Dockerfile install exactly what it writes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UV=${UV:-}
if [ -z "$UV" ]; then
  if command -v uv >/dev/null; then
    UV=uv
  else
    tools=${TMPDIR:-/tmp}/ddpm-lock-tools
    [ -x "$tools/bin/uv" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q --disable-pip-version-check "uv>=0.5"; }
    UV=$tools/bin/uv
  fi
fi
# Start from the current lock: uv keeps its pins where they still satisfy pyproject (no silent upgrades);
# UPGRADE=1 re-resolves everything to the newest versions.
if [ "${UPGRADE:-0}" = 1 ]; then rm -f requirements.lock.tmp; else cp requirements.lock requirements.lock.tmp; fi
"$UV" pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes \
  --no-header --quiet --output-file requirements.lock.tmp
{
  echo "# The pinned environment, written by scripts/lock.sh from pyproject.toml (do not edit by hand)."
  echo "# Installed with: pip install --require-hashes -r requirements.lock"
  cat requirements.lock.tmp
} > requirements.lock
rm requirements.lock.tmp
echo "requirements.lock: $(grep -c '^[a-z]' requirements.lock) packages"
