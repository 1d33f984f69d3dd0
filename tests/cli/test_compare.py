"""`ddpm compare`: headline metrics and only the params that differ among the experiments shown, the baseline
left out unless asked, within 160 columns, from any shell."""

import os
import subprocess
import sys
from pathlib import Path

from ddpm.cli.compare import render, rows

DDPM = str(Path(sys.executable).parent / "ddpm")
TINY = {"profile": "tiny", "dataset": "digits", "schedule": "linear", "objective": "simple", "train": {"lr": 1e-3}}
DEFAULT = {"profile": "cifar10_ddpm", "dataset": "cifar10", "schedule": "linear", "objective": "simple"}
DEFAULT |= {f"key{i:02d}": "a value long enough to be cut short at last" for i in range(40)}  # ~40 params differ


def _rev(name: str, params: dict, summary: dict | None) -> dict:
    metrics = {"metrics/summary.json": {"data": summary}, "metrics/evaluate.json": {"data": {"wall_seconds": 9.0}}}
    data = {"params": {"params.yaml": {"data": params}}, "metrics": metrics if summary else {}}
    return {"rev": f"{name}0123456789", "name": name, "data": data}


def _summary(fid: float) -> dict:
    return {"FID_train": fid, "FID_test": fid + 0.3, "NLL_bpd": 4.97, "KID": 0.018, "Prec": 0.5, "Rec": 0.8}


def show(*experiments: tuple[str, dict, dict | None], state: dict | None = None) -> list[dict]:
    """`dvc exp show --json` of the workspace, the commit and its experiments."""
    exps = [{"name": n, "revs": [_rev(n, p, s)], "executor": (state or {}).get(n)} for n, p, s in experiments]
    workspace = _rev("workspace", experiments[0][1], experiments[0][2]) | {"rev": "workspace", "name": None}
    return [workspace, _rev("main", DEFAULT, None) | {"experiments": exps}]


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_a_lone_experiment_shows_its_profile_schedule_objective_and_headline_without_the_baseline():
    out = lines(render(rows(show(("tiny-linear", TINY, _summary(55.3456))))))
    assert out[0].split("│")[0].split() == ["Experiment", "profile", "schedule", "objective"]
    assert "FID train" in out[0] and "NLL bpd" in out[0] and len(out) == 3
    headline = ["55.35", "55.65", "4.970", "0.0180", "0.500", "0.800"]  # FID train/test, NLL, KID, Prec, Rec
    assert out[2].split() == ["tiny-linear", "tiny", "linear", "simple", "│", *headline]
    assert "main" not in "\n".join(out) and "workspace" not in "\n".join(out)


def test_only_the_params_that_differ_best_fid_first_unfinished_runs_named():
    cosine = TINY | {"schedule": "cosine"}
    hybrid = TINY | {"objective": "hybrid", "train": {"lr": 2e-4}}
    table = show(
        ("a", TINY, _summary(60.0)),
        ("b", cosine, _summary(50.0)),
        ("c", hybrid, None),
        state={"c": {"state": "Queued"}},
    )
    out = lines(render(rows(table)))
    assert out[0].split("│")[0].split() == ["Experiment", "schedule", "objective", "train.lr"]
    assert [line.split()[0] for line in out[2:]] == ["b", "a", "c"]  # FID ascending, no metrics last
    assert out[4].startswith("c (queued)") and out[4].split("│")[1].split() == ["—"] * 6


def test_with_the_baseline_the_table_still_fits_and_names_what_it_left_out():
    table = rows(show(("tiny-linear", TINY, _summary(55.0))), baseline=True)
    assert [row.name for row in table] == ["workspace", "main", "tiny-linear"]
    out = lines(render(table))
    assert max(len(line) for line in out) <= 160
    assert out[-1].startswith("(+") and "left out to fit; all with --md" in out[-1]
    markdown = render(table, markdown=True)
    assert "key39" in markdown and "…" in markdown  # every param, long values cut


def test_the_console_script_finds_dvc_without_the_venv_on_path(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")} | {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([DDPM, "compare"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "not inside of a DVC repository" in out.stderr, out.stderr


def test_a_narrow_terminal_keeps_the_param_that_differs_and_says_what_every_row_shares():
    summaries = [
        _summary(60.0) | {"train_steps": 400, "samples": 128},
        _summary(50.0) | {"train_steps": 400, "samples": 128},
    ]
    table = rows(
        show(("tiny-linear", TINY, summaries[0]), ("tiny-cosine", TINY | {"schedule": "cosine"}, summaries[1]))
    )
    out = lines(render(table, width=80))
    assert max(len(line) for line in out) <= 80
    assert out[0].split("│")[0].split() == ["Experiment", "schedule"]
    assert "steps" not in out[0] and "samples" not in out[0]
    assert out[-1] == "(the same in every row: steps 400, samples 128)"  # dropped first, from the last
    assert out[2].split()[:2] == ["tiny-cosine", "cosine"]
    wide = lines(render(table, width=160))
    assert "steps" in wide[0] and not wide[-1].startswith("(the same")
