#!/bin/sh
# How every stage in dvc.yaml starts: `sh pipeline/run.sh <launcher> pipeline/<stage>.py [args]`. It runs that
# command with a Python that has this project installed: the one on PATH, else the repository's .venv (as
# `source .venv/bin/activate` would), else it stops with one line saying how to make one.
has_project() {
  command -v python >/dev/null 2>&1 &&
    python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('ddpm') is None)" >/dev/null 2>&1
}
if ! has_project; then
  venv="${DVC_ROOT:-.}/.venv"
  if [ -x "$venv/bin/python" ]; then
    PATH="$venv/bin:$PATH"
    VIRTUAL_ENV="$venv"
    export PATH VIRTUAL_ENV
  fi
  if ! has_project; then
    echo "error: ${DVC_STAGE:-$2}: no Python with this project installed here: run \`bash scripts/ensure-venv.sh\`, then \`source .venv/bin/activate\`" >&2
    exit 1
  fi
fi
exec "$@"
