import mlflow

from ddpm.tracking import StageRun


def test_stages_of_one_execution_share_one_parent(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DDPM_PIPELINE_RUN", "run-1")
    params = {"profile": "tiny", "train": {"lr": 0.1}}
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
    assert set(children["params.train.lr"]) == {"0.1"}
    assert (children["metrics.loss"] == 1.0).all() and "metrics.skipped" not in runs
    assert (tmp_path / "mlflow.db").exists() and children["tags.git_commit"].notna().all()
    history = mlflow.tracking.MlflowClient().get_metric_history(children["run_id"].iloc[0], "rate")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 1.5), (2, 2.5)]
