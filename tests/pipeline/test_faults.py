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
from helpers import checkout_copy, pipeline_env, sh

pytestmark = [pytest.mark.slow, pytest.mark.faults]

# Trials per stage and the window after the stage's script starts in which the kill lands (seconds).
TRIALS = {"prepare": (2, 6.0), "train": (4, 14.0), "sample": (3, 8.0), "evaluate": (3, 25.0)}
OVERRIDES = ["profile=tiny", "train.steps=120", "train.checkpoint_every=20", "train.sample_every=0",
             "sample.num_samples=96", "sample.chunk_size=16", "sample.batch_size=16", "fid.max_images=64",
             "evaluate.nll_images=16", "evaluate.nll_batch_size=16"]
# What each stage produces (relative paths) and so what a trial deletes before rerunning it.
OUTPUTS = {
    "prepare": ["data/shards"],
    "train": ["models", "checkpoints", "metrics/train.json", "plots/train_loss.csv"],
    "sample": ["outputs/samples", "outputs/samples.png"],
    "evaluate": ["metrics/evaluate.json", "plots/rate_distortion.csv"],
}
# What a run measures of itself (time and memory), not a result.
TIMINGS = {"fid_seconds", "nll_seconds", "wall_seconds", "peak_accelerator_memory_gib", "peak_host_memory_gib"}


def digest_tree(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def results(repo: Path) -> dict:
    """Everything the four stages produce that must not depend on interruptions."""
    evaluate = json.loads((repo / "metrics" / "evaluate.json").read_text())
    train = json.loads((repo / "metrics" / "train.json").read_text())
    return {
        "shards": digest_tree(repo / "data" / "shards" / "digits"),
        "model": digest_tree(repo / "models" / "ema.safetensors"),
        "samples": {k: v for k, v in digest_tree(repo / "outputs" / "samples").items() if "chunk-" in k},
        "evaluate": {k: v for k, v in evaluate.items() if k not in TIMINGS},
        "train_loss": train["final_loss"],
    }


def compose_params(repo: Path) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(repo / "conf"), version_base=None):
        raw = OmegaConf.to_container(compose(config_name="config", overrides=OVERRIDES), resolve=True)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    env = pipeline_env()
    repo = checkout_copy(tmp_path_factory.mktemp("faults") / "reference", env)
    compose_params(repo)
    sh(["dvc", "repro", "evaluate"], repo, env)
    return repo, env, results(repo)


def stage_started(script: str) -> bool:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if script.encode() in (proc / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def kill_during(repo: Path, env: dict, stage: str, delay: float) -> str:
    """Start `dvc repro <stage>`, SIGKILL its whole process group ``delay`` s after the stage's script starts."""
    proc = subprocess.Popen(["dvc", "repro", stage], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    script = f"pipeline/{stage}.py"
    deadline = time.monotonic() + 120
    while not stage_started(script) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    outcome = "killed" if proc.poll() is None else "finished before the kill"
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    return outcome


@pytest.mark.parametrize("stage,trial", [(s, i) for s, (n, _) in TRIALS.items() for i in range(n)])
def test_killed_stage_resumes_to_the_uninterrupted_result(reference, tmp_path, stage, trial):
    ref_repo, env, expected = reference
    repo = tmp_path / "trial"
    shutil.copytree(ref_repo, repo, symlinks=True)
    for rel in OUTPUTS[stage]:
        target = repo / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    delay = random.Random(f"{stage}-{trial}").uniform(0.0, TRIALS[stage][1])
    outcome = kill_during(repo, env, stage, delay)
    sh(["dvc", "repro", "evaluate"], repo, env)
    got = results(repo)
    for key in expected:
        assert got[key] == expected[key], f"{stage} killed after {delay:.1f}s ({outcome}): {key} differs"
