import sqlite3

import mlflow
import pytest
from helpers import free_port

from ddpm.tracking.runs import StageRun


def test_stages_of_one_execution_share_one_parent(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DDPM_PIPELINE_RUN", "run-1")
    params = {"profile": "tiny", "dataset": "digits", "seed": 3, "train": {"lr": 0.1}}
    for stage in ("prepare", "train"):
        monkeypatch.setenv("DVC_STAGE", stage)
        with StageRun(stage, params, experiment="ddpm-test") as run:
            run.log_metrics({"loss": 1.0, "skipped": float("nan")}, step=3)
            run.log_series({"rate": [0.5, 1.5, 2.5]})
    runs = mlflow.search_runs(experiment_names=["ddpm-test"])
    parents = runs[runs["tags.ddpm.role"] == "pipeline"]
    children = runs[runs["tags.ddpm.role"] == "stage"]
    assert len(parents) == 1 and len(children) == 2
    assert set(children["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    assert set(children["tags.dvc_stage"]) == {"prepare", "train"}
    assert set(children["tags.mlflow.runName"]) == {"prepare · workspace", "train · workspace"}
    # each stage run carries the params its stage declares in dvc.yaml (and the setting); the parent all of them
    by_stage = children.set_index("tags.dvc_stage")
    assert by_stage.loc["train", "params.train.lr"] == "0.1" and by_stage.loc["train", "params.seed"] == "3"
    assert by_stage.loc["prepare"].isna()[["params.train.lr", "params.seed"]].all()
    assert (children["params.dataset"] == "digits").all() and (children["params.profile"] == "tiny").all()
    assert parents["params.train.lr"].iloc[0] == "0.1" and parents["params.seed"].iloc[0] == "3"
    # one-line descriptions; the experiment opens in the UI's model-training view; the store logs ahead (WAL)
    assert parents["tags.mlflow.note.content"].iloc[0].startswith("DVC experiment workspace: tiny profile on digits")
    assert by_stage.loc["train", "tags.mlflow.note.content"].startswith("train. DVC experiment workspace")
    experiment = mlflow.tracking.MlflowClient().get_experiment_by_name("ddpm-test")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (children["metrics.loss"] == 1.0).all() and "metrics.skipped" not in runs
    assert (tmp_path / "mlflow.db").exists() and children["tags.git_commit"].notna().all()
    history = mlflow.tracking.MlflowClient().get_metric_history(children["run_id"].iloc[0], "rate")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 1.5), (2, 2.5)]


def test_more_params_than_one_mlflow_batch_holds(tmp_path, monkeypatch):
    """MLflow takes at most 100 params per request; params.yaml holds 100 keys already, a profile may add more."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DDPM_PIPELINE_RUN", "run-many")
    params = {"profile": "tiny", "dataset": "digits", "extra": {f"k{i}": i for i in range(250)}}
    with StageRun("no-such-stage", params, experiment="ddpm-many") as run:  # undeclared stage: every param
        run_id, parent_id = run.run_id, run.parent_id
    client = mlflow.tracking.MlflowClient()
    assert len(client.get_run(parent_id).data.params) == 252 and len(client.get_run(run_id).data.params) == 252


def _stage_body(params, paths, run):
    import numpy as np

    run.log_metrics({"loss": 0.5}, step=1)
    run.log_metrics({"loss": 0.25}, step=2)
    run.log_series({"rate": [1.0, 2.0]})
    run.log_image(np.zeros((4, 4, 3), dtype=np.uint8), "grid", step=2)


def _run_stage(tmp_path, monkeypatch, uri, body=_stage_body):
    import yaml
    from helpers.params import compose_raw

    from ddpm.stage.harness import stage_main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DDPM_PIPELINE_RUN", "run-x")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_raw()))
    stage_main("train", body, params_path=str(tmp_path / "params.yaml"))
    return sorted((tmp_path / "mlflow-pending").glob("*.jsonl"))


@pytest.mark.timeout(60)  # no minutes of retries
def test_unreachable_server_warns_once_keeps_the_log_and_replays_it_later(tmp_path, monkeypatch, capsys):
    import json

    from ddpm.tracking.spool import replay

    pending = _run_stage(tmp_path, monkeypatch, f"http://127.0.0.1:{free_port()}")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: MLflow")]
    assert len(warnings) == 1 and " replay " in warnings[0]
    assert len(pending) == 1
    records = [json.loads(line) for line in pending[0].read_text().splitlines()]
    assert [r["op"] for r in records] == ["start", "log_metrics", "log_metrics", "log_series", "log_image", "end"]
    assert records[-1]["status"] == "FINISHED"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'later.db'}")  # the server is back
    run_id = replay(pending[0])
    client = mlflow.tracking.MlflowClient()
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 0.5), (2, 0.25)]
    assert [m.value for m in client.get_metric_history(run_id, "rate")] == [1.0, 2.0]
    assert client.get_run(run_id).data.tags["ddpm.replayed"] == "true"
    assert not pending[0].exists() and pending[0].with_suffix(".sent").exists()


def test_server_lost_mid_stage_keeps_the_rest_of_the_log(tmp_path, monkeypatch, capsys):
    import json

    real, calls = mlflow.log_metrics, {"n": 0}

    def dies_after_first(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise ConnectionError("connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_metrics", dies_after_first)
    pending = _run_stage(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len([x for x in capsys.readouterr().err.splitlines() if x.startswith("warning: MLflow")]) == 1
    ops = [json.loads(line)["op"] for line in pending[0].read_text().splitlines()]
    assert ops == ["start", "log_metrics", "log_series", "log_image", "end"]  # the first loss reached MLflow


def test_an_experiment_created_by_another_process_meanwhile_is_taken(tmp_path, monkeypatch):
    """Two queue workers start at once: both miss the experiment, one creates it, the other must take it."""
    from mlflow.tracking import MlflowClient

    from ddpm.tracking import store as tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    theirs = client.create_experiment("ddpm-race")
    real_lookup = client.get_experiment_by_name
    lookups = []

    def lookup(name):  # the first lookup happens before the other worker's create
        lookups.append(name)
        return None if len(lookups) == 1 else real_lookup(name)

    monkeypatch.setattr(client, "get_experiment_by_name", lookup)
    assert tracking.experiment_id(client, "ddpm-race") == theirs and len(lookups) == 2


def _concurrent_stage(root: str, worker: int, barrier) -> None:
    """One queue worker's stage: a few hundred metric points, tags and step-wise metrics, started at the same
    moment as the others (spawned process)."""
    import os
    from pathlib import Path

    from ddpm.tracking.runs import StageRun
    from ddpm.tracking.spool import ResilientRun

    os.environ |= {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "DVC_ROOT": root,
        "DDPM_PIPELINE_RUN": f"pipeline-{worker}",
        "DVC_EXP_NAME": f"exp-{worker}",
    }
    barrier.wait()
    with ResilientRun(
        StageRun("train", {"profile": "tiny", "seed": worker}, "ddpm-queue"), Path(root) / "mlflow-pending"
    ) as run:
        run.log_series({"rate": [float(i) for i in range(1500)]})
        for step in range(25):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            run.set_tags({"last_step": str(step)})
        run.log_summary({"fid_train": float(worker)})


def test_concurrent_workers_share_one_fresh_sqlite_store(tmp_path):
    """Four stage processes start together on a store that does not exist yet (as `dvc queue start -j 4` on a
    fresh project): the schema is created once, every write lands, nothing is spooled."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_concurrent_stage, args=(str(tmp_path), i, barrier)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert not (tmp_path / "mlflow-pending").exists()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ddpm-queue"])
    children, parents = runs[runs["tags.ddpm.role"] == "stage"], runs[runs["tags.ddpm.role"] == "pipeline"]
    assert len(children) == 4 and len(parents) == 4 and (children["status"] == "FINISHED").all()
    assert sorted(parents["metrics.fid_train"]) == [0.0, 1.0, 2.0, 3.0]  # the headline on each pipeline's run
    client = mlflow.tracking.MlflowClient()
    for run_id in children["run_id"]:
        assert len(client.get_metric_history(run_id, "rate")) == 1500
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(25))


def test_a_server_killed_mid_stage_spools_the_rest_and_replay_after_its_restart_loses_nothing(
    tmp_path, monkeypatch, capsys
):
    """A shared server (scripts/mlflow-server.sh) that crashes while a stage logs: the stage completes, the rest
    of its log waits in mlflow-pending/, and once the server is back `ddpm replay` puts it under the same
    pipeline run."""
    from helpers.mlflow_server import MlflowServer

    from ddpm.tracking.spool import replay

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # retrying a dead server: the unreachable test's subject
    live = MlflowServer(tmp_path / "server").start()
    try:
        _crash_and_replay(tmp_path, monkeypatch, capsys, live, replay)
    finally:
        live.stop()


def _crash_and_replay(tmp_path, monkeypatch, capsys, live, replay):
    import json

    def body(params, paths, run):
        run.log_metrics({"loss": 0.5}, step=1)
        live.stop()  # the server crashes mid-stage
        run.log_metrics({"loss": 0.25}, step=2)
        run.log_series({"rate": [1.0, 2.0]})

    pending = _run_stage(tmp_path, monkeypatch, live.uri, body)
    assert len([x for x in capsys.readouterr().err.splitlines() if x.startswith("warning: MLflow")]) == 1
    assert [json.loads(line)["op"] for line in pending[0].read_text().splitlines()] == [
        "start",
        "log_metrics",
        "log_series",
        "end",
    ]
    live.start()  # the same store and port
    run_id = replay(pending[0])
    client = mlflow.tracking.MlflowClient(live.uri)
    replayed = client.get_run(run_id)
    trains = client.search_runs([replayed.info.experiment_id], "tags.dvc_stage = 'train'")
    (first,) = [r for r in trains if r.info.run_id != run_id]
    assert [(m.step, m.value) for m in client.get_metric_history(first.info.run_id, "loss")] == [(1, 0.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(2, 0.25)]
    assert [m.value for m in client.get_metric_history(run_id, "rate")] == [1.0, 2.0]
    parent = first.data.tags["mlflow.parentRunId"]
    assert replayed.data.tags["mlflow.parentRunId"] == parent and replayed.info.status == "FINISHED"


def test_a_busy_server_answering_503_twice_per_request_keeps_the_live_run(tmp_path, monkeypatch, capsys):
    """A shared server busy for a moment (every eighth request refused twice, as a SQLite store locked by another
    queue worker answers): MLflow's client retries, the stage's run reaches the server FINISHED and whole, nothing
    spooled."""
    from helpers.flaky_proxy import FlakyProxy
    from helpers.mlflow_server import MlflowServer

    live = MlflowServer(tmp_path / "server").start()
    try:
        with FlakyProxy(live.uri, failures=2, every=8) as proxy:
            pending = _run_stage(tmp_path, monkeypatch, proxy.uri)
        assert proxy.refused >= 4 and pending == [] and "warning" not in capsys.readouterr().err
        client = mlflow.tracking.MlflowClient(live.uri)
        (experiment,) = client.search_experiments(filter_string="name LIKE 'ddpm-%'")
        (train,) = client.search_runs([experiment.experiment_id], "tags.dvc_stage = 'train'")
        assert train.info.status == "FINISHED"
        assert [(m.step, m.value) for m in client.get_metric_history(train.info.run_id, "loss")] == [
            (1, 0.5),
            (2, 0.25),
        ]
        # the image series' frame and its thumbnail, which MLflow uploads in the background, arrived with the run
        images = [a.path.rsplit(".", 1)[-1] for a in client.list_artifacts(train.info.run_id, "images")]
        assert sorted(images) == ["png", "webp"]
    finally:
        live.stop()


def test_a_dataset_another_worker_logged_first_is_retried_not_spooled(tmp_path, monkeypatch, capsys):
    """Two queue workers log the same dataset to one experiment at once: the store's insert of the loser breaks
    the unique key (as a shared server answered it), the retry finds the row; the run stays live, nothing spooled."""
    from mlflow.exceptions import MlflowException

    real, calls = mlflow.log_input, {"n": 0}

    def raced(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, "
                "datasets.digest",
                error_code="BAD_REQUEST",
            )
        return real(*args, **kwargs)

    def body(params, paths, run):
        run.log_dataset("digits-8px-train", str(tmp_path), "0123456789abcdef", "training", {"images": "1500"})

    monkeypatch.setattr(mlflow, "log_input", raced)
    pending = _run_stage(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'mlflow.db'}", body)
    assert pending == [] and "warning" not in capsys.readouterr().err and calls["n"] == 2
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (experiment,) = client.search_experiments(filter_string="name LIKE 'ddpm-%'")
    (train,) = client.search_runs([experiment.experiment_id], "tags.dvc_stage = 'train'")
    assert train.info.status == "FINISHED"
    assert [d.dataset.name for d in train.inputs.dataset_inputs] == ["digits-8px-train"]
