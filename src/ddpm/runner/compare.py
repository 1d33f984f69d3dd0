"""`dvc exp show` narrowed to the comparison that matters: the headline metrics (metrics/summary.json, always
shown) and the params that differ between the experiments (not counting the baseline commit, whose params.yaml
is the default profile's); the dependency hashes and the stages' detail metrics (timings, memory, per-cell values:
`dvc metrics show metrics/<file>.json`) are left out.

    python -m ddpm.runner.compare            # any `dvc exp show` options may follow, e.g. -A, --md, --sort-by
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

from ddpm.config import flatten

SUMMARY = "metrics/summary.json"


def _revs(entries: list[dict], experiment: bool = False):
    """(rev, is an experiment) for every row of `dvc exp show --json`."""
    for entry in entries:
        yield entry, experiment
        for exp in entry.get("experiments") or []:
            yield from _revs(exp.get("revs") or [], True)


def columns(show: list[dict]) -> tuple[list[str], list[str]]:
    """The columns of `dvc exp show` (its ``--json`` output) to keep (the summary) and to drop (details, deps,
    params equal in every experiment), named as DVC names them: ``name``, or ``file:name`` where two files share a
    name."""
    names: dict[str, dict[str, dict[str, None]]] = {"metrics": {}, "params": {}}
    deps: dict[str, None] = {}
    values: dict[tuple[str, str], set[str]] = {}
    rows = list(_revs(show))
    experiments = [rev for rev, is_exp in rows if is_exp]
    compared = experiments if len(experiments) >= 2 else [rev for rev, _ in rows]
    for rev, _ in rows:
        data = rev.get("data") or {}
        for kind in names:
            for path, content in (data.get(kind) or {}).items():
                names[kind].setdefault(path, {}).update(dict.fromkeys(flatten(content.get("data") or {})))
        deps.update(dict.fromkeys(data.get("deps") or {}))
    for rev in compared:
        for path, content in ((rev.get("data") or {}).get("params") or {}).items():
            for name, value in flatten(content.get("data") or {}).items():
                values.setdefault((path, name), set()).add(repr(value))
    count = Counter(n for kind in names.values() for file in kind.values() for n in file)

    def named(kind: str) -> dict[tuple[str, str], str]:
        return {(path, n): n if count[n] == 1 else f"{path}:{n}" for path, file in names[kind].items() for n in file}

    metrics, params = named("metrics"), named("params")
    keep = [col for (path, _), col in metrics.items() if path == SUMMARY]
    drop = [col for (path, _), col in metrics.items() if path != SUMMARY] + list(deps)
    drop += [col for key, col in params.items() if len(values.get(key, ())) <= 1]
    # the queue's bookkeeping (`dvc queue status` has it) and the creation time: ~160 characters for two experiments
    return keep, drop + ["State", "Executor", "Created"]


def show_arguments(show: list[dict]) -> list[str]:
    """`dvc exp show` options for the narrowed view."""
    keep, drop = columns(show)

    def pattern(cols: list[str]) -> str:
        return "^(" + "|".join(re.escape(c) for c in cols) + ")$" if cols else "^$"

    return ["--keep", pattern(keep), "--drop", pattern(drop)]


def main(argv: list[str]) -> int:
    res = subprocess.run(["dvc", "exp", "show", "--json", *argv], capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        return res.returncode
    return subprocess.run(["dvc", "exp", "show", *show_arguments(json.loads(res.stdout)), *argv]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
