"""Never lose work, through DVC itself, in a copy of the session's quickstart run (the tiny profile's train stage):
a change of another section resumes training; a refused value fails in the check stage before DVC removes any
output; a second `dvc exp run` started while one runs is refused before it touches the workspace while the first
finishes and is saved; a queued experiment killed in its train stage resumes when queued again and ends with the
weights of an uninterrupted run."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from helpers.repos import copy_of, pipeline_env, queue_status, sh, start_queue

pytestmark = pytest.mark.e2e
TINY = ["-S", "profile=tiny", "-S", "train.checkpoint_every=50", "-S", "train.sample_every=0"]
KEPT = ("models/ema.safetensors", "metrics/train.json", "plots/train_loss.csv")


@pytest.fixture(scope="module")
def repo(tiny_run, tmp_path_factory):
    """The quickstart's repository without its checkpoints; a first experiment trains 100 steps (prepare is up to
    date)."""
    env = pipeline_env()
    repo = copy_of(tiny_run["repo"], tmp_path_factory.mktemp("never-lose") / "repo", keep_checkpoints=False)
    out = sh(["dvc", "exp", "run", *TINY, "-S", "train.steps=100", "-n", "first", "train"], repo, env)
    assert "train: starting at step 0 in checkpoints/" in out
    return repo, env


def run(args, repo, env, **kwargs):
    return subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=900, **kwargs)


def exp_params(repo, env) -> dict[str, dict]:
    """Each saved experiment's params.yaml, by name."""
    out = json.loads(sh(["dvc", "exp", "show", "--json"], repo, env))
    return {
        exp.get("name") or exp["revs"][0].get("name"): exp["revs"][0]["data"]["params"]["params.yaml"]["data"]
        for baseline in out
        for exp in baseline.get("experiments") or []
    }


def test_another_section_changed_with_the_steps_resumes_training(repo):
    repo, env = repo
    out = sh(
        [
            "dvc",
            "exp",
            "run",
            *TINY,
            "-S",
            "train.steps=120",
            "-S",
            "solver_table.nfe=[5]",
            "-S",
            "data.verify=streaming",
            "train",
        ],
        repo,
        env,
    )
    [folder] = [p.name for p in (repo / "checkpoints").iterdir()]
    assert f"train: resuming from checkpoints/{folder}/step-000000100 (step 100)" in out


def test_a_refused_value_fails_in_the_check_stage_and_leaves_every_output(repo):
    repo, env = repo
    before = {rel: (repo / rel).read_bytes() for rel in KEPT}
    params, lock = (repo / "params.yaml").read_text(), (repo / "dvc.lock").read_bytes()
    status = sh(["dvc", "status", "--json"], repo, env)
    (repo / "not-a-model.ckpt").write_bytes(b"an HTML error page saved under the checkpoint's name")
    for override, message in (
        (
            f"model.import_from.path={repo / 'not-a-model.ckpt'}",
            f"error: check: model.import_from.path: {repo / 'not-a-model.ckpt'}: refused: not a file of plain tensors",
        ),
        (
            "launcher=accelerate launch --num_processes 3",
            "error: check: train.batch_size: 64 does not split over 3 process(es) × 1 accumulation step(s)",
        ),
        ("train.lr=abc", "error: params.yaml: train.lr: Input should be a valid number"),
        (
            "model.import_from.path=/no/such/model.ckpt",
            "error: params.yaml: model.import_from.path: /no/such/model.ckpt not found",
        ),
        (
            "model.attn_resolutions=[5]",
            "error: params.yaml: model.attn_resolutions: 5 is not a resolution the U-Net reaches (it runs at [8, 4])",
        ),
    ):
        res = run(["dvc", "exp", "run", *TINY, "-S", "train.steps=140", "-S", override, "train"], repo, env)
        assert res.returncode != 0
        assert message in res.stderr + res.stdout, override
        assert "Running stage 'check'" in res.stdout and "Running stage 'train'" not in res.stdout
        assert {rel: (repo / rel).read_bytes() for rel in KEPT} == before, override
        # the way back: params.yaml as the last checked run composed it, the check stage's output put back
        assert " — the workspace is as before this run (params.yaml back to the last checked " in res.stderr
        assert (repo / "params.yaml").read_text() == params, override
        assert (repo / "outputs" / "checked.txt").is_file() and (repo / "dvc.lock").read_bytes() == lock
    assert sh(["dvc", "status", "--json"], repo, env) == status  # DVC sees what it saw before the refused runs


def test_a_profile_whose_data_cannot_be_had_stops_before_any_output_is_removed(repo):
    """Offline, CIFAR-10 with no local archive: refused by the check stage (before DVC removes the shards or FID
    references of the experiment in the workspace), no MLflow experiment for the dataset, a line that says where
    to put the archive; the workspace as before."""
    repo, env = repo
    before = {p: p.read_bytes() for p in sorted((repo / "data").rglob("*")) if p.is_file()}
    params, lock = (repo / "params.yaml").read_text(), (repo / "dvc.lock").read_bytes()
    offline = "data.url=http://127.0.0.1:9/cifar-10-python.tar.gz"
    res = run(["dvc", "exp", "run", "-S", "profile=cifar10_ddpm", "-S", offline], repo, env)
    assert res.returncode != 0 and "Running stage 'prepare'" not in res.stdout
    line = next(x for x in res.stderr.splitlines() if x.startswith("error: "))
    assert line.startswith("error: check: data.url: cannot reach http://127.0.0.1:9/cifar-10-python.tar.gz (")
    assert "put the archive at data/downloads/cifar-10-python.tar.gz (MD5 " in line
    assert " — the workspace is as before this run (params.yaml back to the last checked " in line
    assert {p: p.read_bytes() for p in sorted((repo / "data").rglob("*")) if p.is_file()} == before
    assert (repo / "params.yaml").read_text() == params and (repo / "dvc.lock").read_bytes() == lock
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    assert mlflow.get_experiment_by_name("ddpm-cifar10") is None


def _claimed(repo: Path, name: str) -> bool:
    """Whether experiment ``name``'s pipeline holds the workspace in DVC's experiment lock (its first stage has
    started)."""
    try:
        lock = json.loads((repo / ".dvc" / "tmp" / "exps" / "rwlock").read_text())
    except (OSError, ValueError):
        return False
    holder = lock.get("write", {}).get("workspace", {}).get("cmd", "")
    return holder.startswith("the pipeline of ") and f"-n {name} " in holder  # not DVC's own short hold


def test_a_second_exp_run_while_one_runs_is_refused_and_the_first_is_saved_whole(repo):
    """Started once the first's pipeline has begun (two runs started within the few seconds before the first's
    first stage are both stopped before any work: test_run_lifecycle tests that)."""
    repo, env = repo
    first = subprocess.Popen(
        ["dvc", "exp", "run", *TINY, "-S", "train.steps=100", "-S", "train.lr=0.002", "-n", "lr-002", "train"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not _claimed(repo, "lr-002") and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    second = run(
        ["dvc", "exp", "run", *TINY, "-S", "train.steps=100", "-S", "train.lr=0.003", "-n", "lr-003", "train"],
        repo,
        env,
    )
    out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-3000:]
    assert second.returncode != 0 and "busy" in second.stderr and "the pipeline of" in second.stderr
    saved = exp_params(repo, env)
    assert "lr-003" not in saved and saved["lr-002"]["train"]["lr"] == 0.002
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["lr"] == 0.002
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr"] == 0.002
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    trained = runs[(runs["tags.dvc_stage"] == "train") & (runs["tags.dvc_experiment"] == "lr-002")]
    assert list(trained["params.train.lr"]) == ["0.002"] and "lr-003" not in set(runs["tags.dvc_experiment"])


def test_sampling_killed_under_exp_run_resumes_from_the_chunks_it_made(repo):
    """`dvc exp run` puts the samples folder back as the last commit had it before the stage runs again; the
    chunks the killed run made wait beside it and are reused."""
    repo, env = repo
    args = ["dvc", "exp", "run", *TINY, "-S", "train.steps=100", "-S", "train.lr=0.002"]  # the workspace's model
    args += ["-S", "sample.chunk_size=16", "-S", "sample.batch_size=16", "sample"]
    killed = subprocess.Popen(
        args, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while len(list((repo / "outputs" / ".samples.chunks").glob("*/chunk-*.npz"))) < 2 and killed.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    made = len(list((repo / "outputs" / ".samples.chunks").glob("*/chunk-*.npz")))
    assert made >= 2
    out = sh(args, repo, env)
    reused = int(out.split(" reused → ")[0].rsplit(", ", 1)[1])
    assert reused >= 16 * made  # every chunk the killed run finished
    assert not (repo / "outputs" / ".samples.chunks").exists()


def test_sigterm_to_dvc_alone_stops_its_stage_with_a_checkpoint(repo):
    """DVC killed alone leaves its stage running; the stage notices its dvc is gone and stops after its step,
    with a checkpoint and one line, before it could write the model or register a version."""
    repo, env = repo
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    versions = len(mlflow.MlflowClient().search_model_versions())
    args = ["dvc", "exp", "run", *TINY, "-S", "train.steps=400", "-S", "train.lr=0.002", "-n", "orphan", "train"]
    dvc = subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert dvc.stdout is not None
    for line in dvc.stdout:  # until training runs (it resumes at step 100 of 400)
        if line.startswith("train: resuming from"):
            break
    time.sleep(1)
    dvc.send_signal(signal.SIGTERM)  # to dvc, not to its stage
    _, err = dvc.communicate(timeout=120)  # the stage holds dvc's pipes until it ends
    assert not _train_pids()
    [line] = [line for line in err.splitlines() if line.startswith("error: train: stopped by SIGTERM")]
    step = int(line.split(" at step ")[1].split(";")[0])
    assert 100 < step < 400 and f"step-{step:09d} saved" in line
    assert "error: train: the dvc process that ran this stage" in err
    assert len(mlflow.MlflowClient().search_model_versions()) == versions


def _train_pids() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"pipeline/train.py" in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def saved_model(repo: Path, env, name: str) -> bytes:
    """The EMA weights experiment ``name`` saved: its dvc.lock's hash of them, read from DVC's cache."""
    ref = next(
        line
        for line in sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo, env).split()
        if line.endswith(f"/{name}")
    )
    lock = yaml.safe_load(sh(["git", "show", f"{ref}:dvc.lock"], repo, env))
    [md5] = [o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/ema.safetensors"]
    return (repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).read_bytes()


def _wait_for_queue(repo, env, timeout=600) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = queue_status(repo, env)
        if "Running" not in status and "Queued" not in status:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(2)


def test_a_killed_queued_experiment_resumes_when_queued_again(repo, tmp_path):
    repo, env = repo
    setting = [*TINY, "-S", "train.steps=200", "-S", "train.lr=0.0015"]
    earlier = set((repo / "checkpoints").iterdir())
    sh(["dvc", "exp", "run", "--queue", *setting, "-n", "queued", "train"], repo, env)
    start_queue(repo, env)

    def reached_100() -> list[Path]:
        return [p.parent for p in (repo / "checkpoints").glob("*/step-000000100") if p.parent not in earlier]

    deadline = time.monotonic() + 600
    while not reached_100() and time.monotonic() < deadline:
        time.sleep(0.2)
    [folder] = reached_100()
    for pid in _train_pids():
        os.kill(pid, signal.SIGKILL)
    assert "Failed" in _wait_for_queue(repo, env)
    steps = sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*"))
    assert 100 <= steps[-1] < 200  # killed mid-run: its checkpoints outlived DVC's temporary copy

    sh(["dvc", "queue", "remove", "--failed"], repo, env)  # then `dvc queue logs queued` shows the new task
    sh(["dvc", "exp", "run", "--queue", *setting, "-n", "queued", "train"], repo, env)
    start_queue(repo, env)
    assert "Success" in _wait_for_queue(repo, env)
    log = sh(["dvc", "queue", "logs", "queued"], repo, env)
    assert f"train: resuming from {folder}/step-{steps[-1]:09d} (step {steps[-1]})" in log
    resumed = saved_model(repo, env, "queued")
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    queued = runs[runs["tags.dvc_experiment"] == "queued"]
    assert sorted(queued["status"]) == ["FINISHED", "FINISHED", "KILLED", "KILLED"]  # a parent and train each
    assert queued[queued["status"] == "FINISHED"]["tags.mlflow.parentRunId"].dropna().nunique() == 1

    # the same params, never interrupted: forced past DVC's run cache, with its checkpoints elsewhere
    sh(
        ["dvc", "exp", "run", "--force", *setting, "-n", "uninterrupted", "train"],
        repo,
        env | {"DDPM_CHECKPOINTS": str(tmp_path / "elsewhere")},
    )
    assert saved_model(repo, env, "uninterrupted") == resumed  # bit for bit
