#!/usr/bin/env bash
# The tests, in two tiers (CONTRIBUTING.md, "Test tiers": what each runs, its count and measured time):
#   scripts/test.sh          the quick tier: ruff, then every test that needs no whole pipeline, queue or kill
#   scripts/test.sh --all    what CI runs (.ci/run): scripts/check.sh (ruff, format, mypy, dvc.yaml's deps), then
#                            every test but the slow-marked ones, the e2e pipelines and SIGKILL fault trials included
#   scripts/test.sh --help   this text
# Further arguments go to pytest; a later -m replaces the tier's selection, e.g.
#   scripts/test.sh -m slow                 the slow tests (paper configurations, released-checkpoint DAGs)
#   scripts/test.sh tests/core -k parity    one folder, tests by name
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${1:-}" in
  -h | --help)
    sed -n '2,9p' "$0" | cut -c3-
    exit 0
    ;;
esac
all=0
if [ "${1:-}" = "--all" ]; then
  all=1
  shift
fi
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ "$all" = 1 ]; then
  bash scripts/check.sh
  exec python -m pytest -m "not slow or faults" --durations=15 "$@"
fi
ruff check src pipeline tests scripts benchmarks
exec python -m pytest -m "not slow and not e2e and not faults" --durations=10 "$@"
