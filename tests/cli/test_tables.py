"""Paper tables as queued grids: the queue commands cover exactly each table's rows, every row validates, a bad
override fails before anything is queued."""

import itertools
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from ddpm.cli.tables import TABLES, queue_commands, sweeps
from ddpm.config import ParamsError


@pytest.mark.parametrize("table", sorted(TABLES))
def test_the_sweeps_are_exactly_the_tables_rows(table):
    rows = TABLES[table][1]
    swept = [dict(zip(g, v, strict=True)) for g in sweeps(rows) for v in itertools.product(*g.values())]
    assert sorted(map(repr, swept)) == sorted(repr({**r.params, **r.queue_only}) for r in rows)  # each row once


@pytest.mark.parametrize("profile", [[], ["profile=tiny"]])
def test_every_row_validates_and_the_commands_use_hydra_sweeps(profile):
    commands = queue_commands("iddpm", profile, ROOT / "conf")
    assert len(commands) == 2 and all(cmd[:4] == ["dvc", "exp", "run", "--queue"] for cmd in commands)
    both = [cmd for cmd in commands if "schedule=choice(linear,cosine)" in cmd]
    assert len(both) == 2 and any("objective=choice(hybrid,vlb)" in cmd for cmd in commands)
    assert all(cmd[-2:] == ["-S", "profile=tiny"] for cmd in commands) or not profile
    assert len(queue_commands("ddpm", profile, ROOT / "conf")) == 4


def test_a_bad_override_fails_naming_the_row_before_anything_is_queued():
    row = r"table iddpm, row schedule=linear mean_type=eps objective=simple .*train\.lr"
    with pytest.raises(ParamsError, match=row):
        queue_commands("iddpm", ["train.lr=-1"], ROOT / "conf")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ddpm"), "table", "ddpm", "--commands", "-S", "nosuch=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error: table ddpm, row ") and "nosuch" in out.stderr


def test_the_script_prints_a_script_a_shell_runs_as_is():
    """--print: the queue commands quoted for bash (Hydra's choice(...) and lists included), the workers, then the
    table command with the same overrides."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    args = ["-S", "profile=tiny", "-S", "solver_table.samplers=[ddim]"]
    out = subprocess.run(
        ["bash", "scripts/table.sh", "iddpm", "--print", "-j", "2", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert subprocess.run(["bash", "-n"], input=out.stdout, text=True).returncode == 0
    lines = [line for line in out.stdout.splitlines() if not line.startswith("#")]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # the workers share the cores (nproc)
    queue = queue_commands("iddpm", args[1::2], ROOT / "conf")
    assert [shlex.split(line) for line in lines[1:-2]] == queue and lines[0] == "source .venv/bin/activate"
    assert lines[-2] == f"OMP_NUM_THREADS={threads} dvc queue start -j 2"
    assert shlex.split(lines[-1]) == ["ddpm", "table", "iddpm", *args, "--out", "tables/iddpm.md"]
