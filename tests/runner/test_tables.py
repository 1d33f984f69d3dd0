"""Paper tables as queued grids: the queue commands cover exactly each table's rows, every row validates, a bad
override fails before anything is queued."""

import itertools
import os
import subprocess
import sys

import pytest
from helpers import ROOT

from ddpm.config import ParamsError
from ddpm.evaluation.paper_tables import DDPM_TABLE2, IDDPM_OBJECTIVES, IDDPM_SCHEDULES
from ddpm.runner.tables import GRIDS, queue_commands


def _rows(table: str, keys: tuple[str, ...]) -> set[tuple]:
    return {tuple(dict(zip(g, v, strict=True))[k] for k in keys)
            for g in GRIDS[table] for v in itertools.product(*g.values())}


def test_grids_are_the_tables_rows():
    assert _rows("ddpm", ("mean_type", "objective", "variance")) == {key for _, _, key, *_ in DDPM_TABLE2}
    assert all(schedule == "linear" for (schedule,) in _rows("ddpm", ("schedule",)))
    expected = {(s, o, "fixed_large" if o == "simple" else "learned_range")
                for s in IDDPM_SCHEDULES for o in IDDPM_OBJECTIVES}
    assert _rows("iddpm", ("schedule", "objective", "variance")) == expected


@pytest.mark.parametrize("profile", [[], ["profile=tiny"]])
def test_every_row_validates_and_the_commands_use_hydra_sweeps(profile):
    commands = queue_commands("iddpm", profile, ROOT / "conf")
    assert commands[1][:4] == ["dvc", "exp", "run", "--queue"]
    assert "schedule=choice(linear,cosine)" in commands[1] and "objective=choice(hybrid,vlb)" in commands[1]
    assert all(cmd[-2:] == ["-S", "profile=tiny"] for cmd in commands) or not profile
    assert len(queue_commands("ddpm", profile, ROOT / "conf")) == 4


def test_a_bad_override_fails_naming_the_row_before_anything_is_queued():
    with pytest.raises(ParamsError, match=r"table iddpm, row schedule=linear objective=simple .*train\.lr"):
        queue_commands("iddpm", ["train.lr=-1"], ROOT / "conf")
    out = subprocess.run([sys.executable, "-m", "ddpm.runner.tables", "ddpm", "--commands", "-S", "nosuch=1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error: table ddpm, row ") and "nosuch" in out.stderr


def test_the_script_prints_the_queue_commands():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(["bash", "scripts/table.sh", "iddpm", "--print", "-j", "2", "-S", "profile=tiny"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("+ ")]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # the workers share the cores (nproc)
    assert lines == ["+ " + " ".join(cmd) for cmd in queue_commands("iddpm", ["profile=tiny"], ROOT / "conf")] + [
        f"+ OMP_NUM_THREADS={threads} dvc queue start -j 2"]
