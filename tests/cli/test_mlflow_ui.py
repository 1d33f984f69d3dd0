"""`ddpm mlflow`: the command that opens the UI on the project's store, and each experiment's page in the
model-training view with the headline view the experiment carries (pipeline runs, best FID first)."""

import json

from mlflow.tracking import MlflowClient

from ddpm.cli.mlflow_ui import main
from ddpm.tracking.store import VIEW, experiment_id, prepare_store


def test_each_experiment_opens_on_its_pipeline_runs_best_fid_first(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main([]) == 0 and "no store yet" in capsys.readouterr().out
    prepare_store(uri)
    client = MlflowClient(uri)
    exp = experiment_id(client, "ddpm-digits")
    view = json.loads(client.get_experiment(exp).tags[f"mlflow.sharedViewState.{VIEW}"])
    assert view["searchFilter"] == "tags.`ddpm.role` = 'pipeline'" and view["orderByKey"] == "metrics.`FID_train`"
    assert view["orderByAsc"] is True and "params.`schedule`" in view["selectedColumns"]
    description = client.get_experiment(exp).tags["mlflow.note.content"]  # what the experiment page says first
    assert description.startswith("ddpm-pipeline runs on digits: one **pipeline run** per DVC execution")
    assert f"(#/experiments/{exp}/runs?viewStateShareKey={VIEW}&workflowType=machine_learning)" in description
    assert main(["--port", "5056"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"ui --backend-store-uri {uri} --port 5056")
    assert out[1] == (
        f"  ddpm-digits: http://127.0.0.1:5056/#/experiments/{exp}/runs"
        f"?viewStateShareKey={VIEW}&workflowType=machine_learning"
    )
