"""Exact resume: a training run killed with SIGKILL and restarted ends with the same weights, bit for bit."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers.params import make_params
from safetensors.torch import load_file

from ddpm.data import shards, sources
from ddpm.training.checkpoints import list_checkpoints

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {
    "dataset": "digits",
    "timesteps": 50,
    "objective": "hybrid",
    "variance": "learned_range",
    "timestep_sampler": "loss_aware",
    "data": {"resolution": 8, "shard_size": 500},
    "model": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4], "dropout": 0.1},
    "train": {
        "steps": 90,
        "batch_size": 32,
        "lr": 1e-3,
        "warmup": 5,
        "ema_decay": 0.9,
        "log_every": 10,
        "checkpoint_every": 20,
        "keep_checkpoints": 2,
        "shuffle_buffer": 200,
        "loader_workers": 0,  # the training process decodes (tests/data/test_loader_workers.py covers workers)
    },
}


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    p = make_params(PARAMS)
    out = tmp_path_factory.mktemp("shards") / "digits"
    shards.write_dataset({s: sources.iter_split(p, s) for s in sources.SPLITS}, out, 500, {"dataset": "digits"})
    return out


def workdir(tmp_path: Path, name: str, shard_dir: Path) -> Path:
    d = tmp_path / name
    (d / "data" / "shards").mkdir(parents=True)
    shutil.copytree(shard_dir, d / "data" / "shards" / "digits")
    (d / "params.yaml").write_text(yaml.safe_dump(make_params(PARAMS).model_dump(mode="json")))
    return d


def start_train(cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}", DVC_ROOT=str(cwd))
    return subprocess.Popen(
        [sys.executable, str(ROOT / "pipeline" / "train.py")],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_folders(workdir: Path) -> list[Path]:
    root = workdir / "checkpoints"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def uninterrupted(shard_dir, tmp_path_factory) -> Path:
    """The run every interrupted one must end equal to."""
    reference = workdir(tmp_path_factory.mktemp("reference"), "uninterrupted", shard_dir)
    finish(start_train(reference))
    return reference


def test_kill9_and_resume_is_bit_identical(tmp_path, shard_dir, uninterrupted):
    reference = uninterrupted

    resumed = workdir(tmp_path, "killed", shard_dir)
    proc = start_train(resumed)
    deadline = time.time() + 300
    while not run_folders(resumed) and time.time() < deadline:
        time.sleep(0.05)
    [folder] = run_folders(resumed)
    while not list_checkpoints(folder) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(7).uniform(0.0, 1.5))  # a seeded random moment after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = [c.step for c in list_checkpoints(folder)]
    assert killed_at and killed_at[-1] < 90 and not (resumed / "models" / "ema.safetensors").exists()
    out = finish(start_train(resumed))
    ck = f"checkpoints/{folder.name}"
    assert f"train: resuming from {ck}/step-{killed_at[-1]:09d} (step {killed_at[-1]})" in out
    assert run_folders(reference) == [reference / ck]  # the same params and shards: the same run folder

    names = ["models/ema.safetensors"] + [
        f"{ck}/step-000000090/{f}.safetensors" for f in ("model", "optimizer", "state")
    ]
    _same_weights(reference, resumed, names)
    assert [c.step for c in list_checkpoints(folder)] == [80, 90]  # keep_checkpoints: 2


def _same_weights(reference: Path, resumed: Path, names: list[str]) -> None:
    for name in names:
        a, b = load_file(str(reference / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs after resume"


def test_ctrl_c_saves_the_step_and_resumes_bit_identical(tmp_path, shard_dir, uninterrupted):
    """Stopped between checkpoint boundaries (SIGINT; SIGTERM takes the same road), training saves a checkpoint of
    the step it finished (with its generators' states), says so in one line, and the rerun goes on to the weights
    of an uninterrupted run."""
    reference, sig = uninterrupted, signal.SIGINT
    stopped = workdir(tmp_path, "stopped", shard_dir)
    proc = start_train(stopped)
    deadline = time.time() + 300
    while not (run_folders(stopped) and list_checkpoints(run_folders(stopped)[0])) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(sig).uniform(0.2, 1.0))  # between two checkpoint boundaries, most likely
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=600)
    [folder] = run_folders(stopped)
    step = list_checkpoints(folder)[-1].step
    assert proc.returncode == 1 and "Traceback" not in out and step < 90
    [line] = [line for line in out.splitlines() if line.startswith("error:")]
    assert line == (
        f"error: train: stopped by {sig.name} at step {step}; checkpoint checkpoints/{folder.name}/step-{step:09d} "
        "saved: rerun the "
        "stage to resume from it"
    )
    out = finish(start_train(stopped))
    assert f"train: resuming from checkpoints/{folder.name}/step-{step:09d} (step {step})" in out
    _same_weights(
        reference, stopped, ["models/ema.safetensors", f"checkpoints/{folder.name}/step-000000090/model.safetensors"]
    )


def _set_steps(workdir: Path, steps: int) -> None:
    (workdir / "params.yaml").write_text(
        yaml.safe_dump(make_params(PARAMS | {"train": PARAMS["train"] | {"steps": steps}}).model_dump(mode="json"))
    )


def test_fewer_steps_than_a_checkpoint_trains_to_the_asked_step(tmp_path, shard_dir):
    """After a 40-step run (checkpoints 20 and 40), train.steps = 10 trains from step 0, the weights equal to a
    run asked for 10 steps in the first place (never the step-40 weights labelled 10); train.steps = 30 resumes from
    step 20. The longer run's checkpoints stay."""
    longer = workdir(tmp_path, "longer", shard_dir)
    _set_steps(longer, 40)
    finish(start_train(longer))
    [folder] = run_folders(longer)
    assert [c.step for c in list_checkpoints(folder)] == [20, 40]
    _set_steps(longer, 10)
    out = finish(start_train(longer))
    assert "train: starting at step 0" in out and "the checkpoints beyond train.steps = 10 stay" in out
    fresh = workdir(tmp_path, "fresh", shard_dir)
    _set_steps(fresh, 10)
    finish(start_train(fresh))
    a, b = (load_file(str(d / "models" / "ema.safetensors")) for d in (longer, fresh))
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert [c.step for c in list_checkpoints(folder)][-2:] == [20, 40]
    _set_steps(longer, 30)
    out = finish(start_train(longer))
    assert f"train: resuming from checkpoints/{folder.name}/step-000000020 (step 20)" in out
    assert [c.step for c in list_checkpoints(folder)][-1] == 40
