"""Stages that read a corrupt shard stop within seconds with one line naming it, with one process and two ranks,
and leave what earlier runs wrote (checkpoints, model, samples, metrics) untouched."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers.params import compose_raw, merged

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_corrupt_shards import corrupt  # noqa: E402

TINY = {
    "data": {"shard_size": 2000},  # one training shard for one process
    "model": {"ch": 32, "ch_mult": [1, 2], "attn_resolutions": []},
    "train": {
        "steps": 4,
        "checkpoint_every": 2,
        "batch_size": 16,
        "log_every": 1,
        "sample_every": 100,
        "shuffle_buffer": 100,
        "warmup": 1,
    },
    "sample": {"num_samples": 8, "sampler": "ddim", "steps": 5, "batch_size": 8, "chunk_size": 8, "grid_size": 4},
    "evaluate": {"fid": False, "isc": False, "nll_images": 40, "nll_batch_size": 20},
}
TWO_RANKS = [
    "-m",
    "accelerate.commands.launch",
    "--config_file",
    str(ROOT / "conf" / "accelerate" / "cpu_2proc.yaml"),
    "--main_process_port",
    "0",
]


def run(stage: str, cwd: Path, ranks: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    """The stage in ``cwd``; on a damaged workspace it must stop within 2 minutes (``timeout=120``: the damage is
    found before any work)."""
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}",
        DVC_ROOT=str(cwd),
        ACCELERATE_USE_CPU="1",
        OMP_NUM_THREADS="1",
    )
    launcher = TWO_RANKS if ranks == 2 else []
    return subprocess.run(
        [sys.executable, *launcher, str(ROOT / "pipeline" / f"{stage}.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def workspace(root: Path, patch: dict, stages: list[str]) -> Path:
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(merged(compose_raw(["profile=tiny"]), merged(TINY, patch))))
    for stage in stages:
        res = run(stage, root)
        assert res.returncode == 0, res.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny profile's data, 4 steps of a small model (checkpoints at 2 and 4) and 8 samples."""
    return workspace(tmp_path_factory.mktemp("one") / "ws", {}, ["prepare", "train", "sample"])


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory):
    """Shards of 750: the training split makes two, one per rank."""
    return workspace(tmp_path_factory.mktemp("two") / "ws", {"data": {"shard_size": 750}}, ["prepare"])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file the stages wrote (checkpoints, model, samples, metrics, plots, FID references), by hash."""
    skip = ("data/shards", "mlflow", "mlartifacts")  # the damaged input, and MLflow's record of the failed run
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not str(p.relative_to(folder)).startswith(skip) and p.name != ".lock"
    }  # a run folder's lock names the process that last held it


def damaged_copy(source: Path, dest: Path, shard: str, how: str) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("mlartifacts"))
    corrupt(dest / "data" / "shards" / "digits" / shard, how)
    return dest


# (stage, damaged shard): train reads the training split, fid_ref both splits (train first), evaluate's NLL the test
STAGES = {"train": "train-000000.tar", "fid_ref": "train-000000.tar", "evaluate": "test-000000.tar"}
DEFAULT = {("train", "payload"), ("evaluate", "header"), ("fid_ref", "truncated")}


@pytest.mark.parametrize(
    "stage,how",
    [
        (s, h) if (s, h) in DEFAULT else pytest.param(s, h, marks=pytest.mark.slow)
        for s in STAGES
        for h in ("payload", "header", "truncated")
    ],
)
def test_one_process_names_the_shard_and_touches_nothing(trained, tmp_path, stage, how):
    ws = damaged_copy(trained, tmp_path / "ws", STAGES[stage], how)
    if stage == "train":  # resume for 4 more steps
        params = yaml.safe_load((ws / "params.yaml").read_text())
        params["train"]["steps"] = 8
        (ws / "params.yaml").write_text(yaml.safe_dump(params))
    before = snapshot(ws)
    res = run(stage, ws, timeout=120)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {stage}: shard data/shards/digits/{STAGES[stage]} is corrupt: ")
    assert last.endswith("rerun `dvc repro prepare` (or `dvc pull` if the shards came from a DVC remote)")
    assert snapshot(ws) == before  # no checkpoint, model, sample, metric or FID reference touched or added
    assert "models/ema.safetensors" in before
    assert any(k.startswith("checkpoints/") and k.endswith("/step-000000004/model.safetensors") for k in before)


@pytest.mark.parametrize(
    "stage,how",
    [
        ("train", "payload"),
        pytest.param("train", "header", marks=pytest.mark.slow),
        pytest.param("train", "truncated", marks=pytest.mark.slow),
        pytest.param("fid_ref", "payload", marks=pytest.mark.slow),
    ],
)
def test_two_ranks_report_the_failing_ranks_line_and_stop(two_shards, tmp_path, stage, how):
    """In training both shards are damaged, so whichever a rank draws first (every rank resamples all shards) fails
    it at once: the failing rank's line reaches the user, as the launcher's root cause, and the other rank
    (waiting in an all-reduce, or failing too) is stopped, not left hanging. The FID reference reads train-000000
    on both ranks (its image limit ends there)."""
    shards = ["train-000000.tar", "train-000001.tar"] if stage == "train" else ["train-000000.tar"]
    ws = damaged_copy(two_shards, tmp_path / "ws", shards[0], how)
    for shard in shards[1:]:
        corrupt(ws / "data" / "shards" / "digits" / shard, how)
    res = run(stage, ws, ranks=2, timeout=120)
    assert res.returncode != 0
    line = rf"error: {stage}: shard data/shards/digits/train-00000[01]\.tar is corrupt: "
    assert re.search(line, res.stderr)
    root_cause = res.stderr.split("Root Cause")[-1]
    assert re.search(f"traceback : {line}", root_cause)  # the rank's error file, not "To enable traceback see ..."
    assert not list((ws / "checkpoints").glob("*/step-*"))  # a run folder at most, no checkpoint in it
