"""Kill anywhere: SIGKILL `dvc repro` at seeded random moments inside prepare, train, sample and evaluate; the
next `dvc repro` must finish with exactly what an uninterrupted run produced (bit-identical shards, weights and
samples; identical metrics).

Runs in a temporary copy of this checkout with a small configuration of the tiny profile (slow-marked, and
selected by the `faults` marker in CI).
"""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers.repos import checkout_copy, pipeline_env, sh

from ddpm.config import load_params
from ddpm.stage.paths import Paths, checkpoint_root

pytestmark = [pytest.mark.slow, pytest.mark.faults]

# Trials per stage (DDPM_FAULT_TRIALS, default 1: CI's budget; each trial is another seeded kill point), and
# where in the stage's run the kill lands (a fraction of the script's uninterrupted time).
TRIALS = dict.fromkeys(("prepare", "train", "sample", "evaluate"), int(os.environ.get("DDPM_FAULT_TRIALS", "1")))
WINDOW = (0.05, 0.7)
OVERRIDES = [
    "profile=tiny",
    "train.steps=120",
    "train.checkpoint_every=20",
    "train.sample_every=0",
    "sample.num_samples=96",
    "sample.chunk_size=16",
    "sample.batch_size=16",
    "fid.max_images=64",
    "evaluate.nll_images=16",
    "evaluate.nll_batch_size=16",
]


def outputs(repo: Path, stage: str) -> list[Path]:
    """What a stage produces (and so what a trial deletes before rerunning it), from the stages' own paths."""
    p = Paths(load_params(repo / "params.yaml"), repo)
    return {
        "prepare": [p.shards],
        "train": [p.model, checkpoint_root(repo), p.train_metrics, p.train_plot],
        "sample": [p.samples, p.sample_grid],
        "evaluate": [p.eval_metrics, p.rd_plot],
    }[stage]


# What a run measures of itself (time and memory), not a result.
TIMINGS = {"fid_seconds", "nll_seconds", "wall_seconds", "peak_accelerator_memory_gib", "peak_host_memory_gib"}


def digest_tree(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def results(repo: Path) -> dict:
    """Everything the four stages produce that must not depend on interruptions."""
    p = Paths(load_params(repo / "params.yaml"), repo)
    evaluate = json.loads(p.eval_metrics.read_text())
    train = json.loads(p.train_metrics.read_text())
    return {
        "shards": digest_tree(p.shards),
        "model": digest_tree(p.model),
        "samples": {k: v for k, v in digest_tree(p.samples).items() if "chunk-" in k},
        "evaluate": {k: v for k, v in evaluate.items() if k not in TIMINGS},
        "train_loss": train["final_loss"],
    }


def compose_params(repo: Path) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(repo / "conf"), version_base=None):
        raw = OmegaConf.to_container(compose(config_name="config", overrides=OVERRIDES), resolve=True)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def script_running(script: str) -> bool:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if script.encode() in (proc / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def repro(repo: Path, env: dict, stage: str, kill_after: float | None = None) -> tuple[float, bool]:
    """`dvc repro <stage>`: to the end, or SIGKILLed (its whole process group) ``kill_after`` s after the stage's
    script starts. Returns how long the script ran, and whether the kill landed while it was running."""
    proc = subprocess.Popen(
        ["dvc", "repro", stage],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    script = f"pipeline/{stage}.py"
    start = end = None
    while proc.poll() is None and end is None:
        running, now = script_running(script), time.monotonic()
        if start is None and running:
            start = now
        elif start is not None and not running:
            end = now
        if start is not None and kill_after is not None and now - start >= kill_after:
            landed = script_running(script)  # the script still runs as the kill goes out
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            return now - start, landed
        time.sleep(0.02)
    _, err = proc.communicate(timeout=3600)
    assert proc.returncode == 0 and start is not None, f"dvc repro {stage} (script started: {start is not None}): {err}"
    return (end or time.monotonic()) - start, False


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, stage by stage, timing each stage's script."""
    env = pipeline_env()
    repo = checkout_copy(tmp_path_factory.mktemp("faults") / "reference", env)
    compose_params(repo)
    seconds = {stage: repro(repo, env, stage)[0] for stage in TRIALS}  # in DAG order (fid_ref runs with evaluate)
    return repo, env, results(repo), seconds


@pytest.mark.parametrize("stage,trial", [(s, i) for s, n in TRIALS.items() for i in range(n)])
def test_killed_stage_resumes_to_the_uninterrupted_result(reference, tmp_path, stage, trial):
    ref_repo, env, expected, seconds = reference
    repo = tmp_path / "trial"
    shutil.copytree(ref_repo, repo, symlinks=True)
    fraction = random.Random(f"{stage}-{trial}").uniform(*WINDOW)
    for attempt in range(8):  # a script quicker than in the reference run (a busy machine): kill earlier, afresh
        # Without DVC's cache, as when a first run is killed: DVC cannot hand back the stage's outputs (from the
        # reference or from an attempt that finished) instead of running the script; it must run and resume it.
        shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
        for target in outputs(repo, stage):
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        delay = fraction * seconds[stage] / 2**attempt
        _, landed = repro(repo, env, stage, kill_after=delay)
        if landed:
            break
    assert landed, f"{stage}: no kill landed while pipeline/{stage}.py ran ({seconds[stage]:.1f} s uninterrupted)"
    sh(["dvc", "repro", "evaluate"], repo, env)  # the killed stage reruns, resuming from what it left
    got = results(repo)
    for key in expected:
        assert got[key] == expected[key], f"{stage} killed {delay:.1f} s into its script: {key} differs"
