"""Two DVC queue workers logging to one shared MLflow server (scripts/mlflow-server.sh, SQLite-backed, artifacts in
an S3 bucket on a loopback endpoint) at once, in a copy of the session's quickstart run without its local MLflow
store: every stage run, the trained models, their sample grids and registry versions reach the server and the
bucket, nothing is written to a local store, and the storage credentials appear in no run, log or file."""

import shutil

import mlflow
import pytest
from helpers.mlflow_server import MlflowServer
from helpers.repos import copy_of, pipeline_env, sh, start_queue, wait_for_queue

from ddpm.tracking.registry import registered_name

pytestmark = pytest.mark.e2e
TINY = ["-S", "profile=tiny", "-S", "train.steps=20", "-S", "train.checkpoint_every=10", "-S", "train.sample_every=20"]
LRS = {"lr-a": "0.001", "lr-b": "0.002"}


def test_two_queue_workers_log_every_run_and_model_to_one_server(tiny_run, s3, tmp_path):
    """Each queued experiment runs check and train (prepare's shards are the workspace's, up to date). The stages
    hold the team's storage credentials too (as nodes that read shards from a bucket do)."""
    server = MlflowServer(tmp_path / "server", artifacts=f"{s3.bucket('team-mlflow')}/artifacts", env=s3.env).start()
    try:
        env = pipeline_env() | s3.env | {"MLFLOW_TRACKING_URI": server.uri}
        repo = copy_of(tiny_run["repo"], tmp_path / "repo", keep_checkpoints=False)
        (repo / "mlflow.db").unlink()  # a team on a server keeps no local store
        shutil.rmtree(repo / "mlartifacts")
        for name, lr in LRS.items():
            sh(["dvc", "exp", "run", "--queue", *TINY, "-S", f"train.lr={lr}", "-n", name, "train"], repo, env)
        start_queue(repo, env, jobs=2)
        status = wait_for_queue(repo, env, set(LRS))
        logs = {name: sh(["dvc", "queue", "logs", name], repo, env) for name in LRS}
        warned = {
            name: [ln for ln in log.splitlines() if ln.startswith(("warning:", "error:"))] for name, log in logs.items()
        }
        assert status == dict.fromkeys(LRS, "Success"), logs["lr-a"][-3000:]
        kept = [path.read_text().splitlines()[0] for path in (repo / "mlflow-pending").glob("*.jsonl")]
        assert warned == dict.fromkeys(LRS, []), f"{warned}\n{kept}\n{server.log_tail()}"

        client = mlflow.tracking.MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("ddpm-digits")
        runs = client.search_runs([experiment.experiment_id])
        by_experiment: dict[str, list] = {}
        for run in runs:
            by_experiment.setdefault(run.data.tags.get("dvc_experiment", ""), []).append(run)
        assert set(by_experiment) == set(LRS)
        for name, lr in LRS.items():
            found = by_experiment[name]
            roles = sorted((r.data.tags["ddpm.role"], r.data.tags.get("dvc_stage", "")) for r in found)
            assert roles == [("pipeline", ""), ("stage", "train")], name
            assert {r.info.status for r in found} == {"FINISHED"}
            (train,) = [r for r in found if r.data.tags.get("dvc_stage") == "train"]
            assert train.data.params["train.lr"] == lr
        versions = client.search_model_versions(f"name = '{registered_name('digits')}'")
        assert len(versions) == 2
        assert len(server.stored(".safetensors")) == 2  # stored by the server, in the bucket
        frames = [key for key in server.stored(".png") if "ema_samples" in key and "thumbnail" not in key]
        assert len(frames) == 2 * 2, frames  # each train run's sample grids (steps 0 and 20)
        assert not (repo / "mlflow.db").exists() and not (repo / "mlflow-pending").exists()
        assert not (server.folder / "artifacts").exists()
        _assert_nowhere(s3.secret, runs, [repo, server.folder], logs)
    finally:
        server.stop()


def _assert_nowhere(secret: str, runs, folders, logs) -> None:
    """``secret`` is in no run's params, tags or metrics names, no file under ``folders``, and no log."""
    for run in runs:
        shown = [run.data.params, run.data.tags, {k: "" for k in run.data.metrics}]
        assert not any(secret in f"{k}={v}" for d in shown for k, v in d.items()), run.info.run_name
    for folder in folders:
        for path in folder.rglob("*"):
            assert not (path.is_file() and secret.encode() in path.read_bytes()), path
    assert not any(secret in log for log in logs.values())
