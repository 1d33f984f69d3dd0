"""What the report and the table command read back from MLflow: the evaluated runs of a dataset (their params,
metrics and names) and the registry's best_fid alias moved among the comparable ones. A dead tracking server
never stops the report: each query says so in a line instead."""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ddpm.config import experiment_name
from ddpm.evaluation.paper_tables import Record, comparable

from .registry import BEST_ALIAS, registered_name
from .store import check_store_file, tracking_uri
from .tracker import FID_REFERENCE_TAG, MODEL_SHA_TAG


def evaluated_runs(dataset: str, leave_out: str | None = None) -> tuple[list[dict], str]:
    """Every finished ``evaluate`` stage run of the dataset's experiment, oldest first (params, metrics and the DVC
    experiment's name as ``label``), but those of the pipeline run ``leave_out`` (the report's own execution, whose
    evaluation it adds itself), and a note: empty, or saying that the store could not be read (a dead tracking
    server must not stop the report)."""
    try:
        return _evaluated_runs(experiment_name(dataset), leave_out), ""
    except Exception as err:  # noqa: BLE001 - any tracking failure
        return [], f"(MLflow runs unavailable: {type(err).__name__}; these tables hold this run only)\n\n"


def promote_best_model(dataset: str, key: dict[str, str | None]) -> str:
    """Move the registry alias to the best-FID weights among the evaluated runs comparable with ``key``
    (``paper_tables.COMPARABLE``: ``registry.move_best_alias``); a line saying what happened, also when the store
    cannot be reached (the report must not fail on it)."""
    try:
        records = comparable([Record(**r) for r in _evaluated_runs(experiment_name(dataset))], key)
        return move_best_alias(dataset, records)
    except Exception as err:  # noqa: BLE001 - any tracking failure
        return f"model registry unavailable ({type(err).__name__}); alias not moved"


def _evaluated_runs(experiment: str, leave_out: str | None = None) -> list[dict]:
    check_store_file(tracking_uri())
    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.dvc_stage = 'evaluate' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    )
    parents: dict[str, dict] = {}  # a stage run carries its own params; the setting is on its pipeline's run

    def setting(run) -> dict:
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent and parent not in parents:
            try:
                parents[parent] = dict(client.get_run(parent).data.params)
            except MlflowException:  # a deleted parent: its row cannot be matched, the others still can
                parents[parent] = {}
        return parents.get(parent, {}) | dict(run.data.params)

    return [
        {
            "params": setting(r) | {"fid_reference": r.data.tags.get(FID_REFERENCE_TAG)},
            "metrics": dict(r.data.metrics),
            "label": r.data.tags.get("dvc_experiment", r.info.run_id[:8]),
            "model_sha256": r.data.tags.get(MODEL_SHA_TAG, ""),
        }
        for r in runs
        if leave_out is None or r.data.tags.get("mlflow.parentRunId") != leave_out
    ]


def move_best_alias(dataset: str, candidates: list[Record]) -> str:
    """Point ``best_fid`` at the registered version of the best-FID weights among ``candidates`` (evaluated runs
    comparable with the one building the report); returns a line saying what it did."""
    client = MlflowClient()
    name = registered_name(dataset)
    scored = [r for r in candidates if r.model_sha256 and r.metrics.get("fid_train") is not None]
    for run in sorted(scored, key=lambda r: r.metrics["fid_train"]):
        versions = client.search_model_versions(f"name = '{name}' and tags.`{MODEL_SHA_TAG}` = '{run.model_sha256}'")
        if versions:
            best = max(versions, key=lambda v: int(v.version))
            client.set_registered_model_alias(name, BEST_ALIAS, best.version)
            samples = int(run.metrics.get("num_samples", 0))
            return (
                f"alias {BEST_ALIAS} → {name} version {best.version} (FID {run.metrics['fid_train']:.2f}, "
                f"{samples} samples, {run.params.get('train.steps')} steps, {run.label})"
            )
    return f"no registered model of {name} has an FID comparable with this run's; alias not moved"


def stage_durations(dataset: str, experiment: str) -> list[tuple[str, float]]:
    """Each stage run of the newest pipeline run of DVC experiment ``experiment`` in the dataset's MLflow
    experiment, in the order they started: (stage, wall seconds from the run's start to its end). A matrix cell
    is named as DVC names it (``ddim_fid@10-0.0``); unfinished runs are left out."""
    check_store_file(tracking_uri())
    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment_name(dataset))
    if exp is None:
        raise ValueError(f"MLflow: no experiment {experiment_name(dataset)!r} in {tracking_uri()}")
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.dvc_experiment = '{experiment}'",
        order_by=["attributes.start_time DESC"],
        max_results=5000,
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and "dvc_stage" not in r.data.tags]
    if not parents:
        raise ValueError(f"MLflow: no pipeline run of DVC experiment {experiment!r} in {experiment_name(dataset)!r}")
    stages = [
        r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id and r.info.end_time is not None
    ]
    return [
        (r.data.tags["dvc_stage"], (r.info.end_time - r.info.start_time) / 1000)
        for r in sorted(stages, key=lambda r: r.info.start_time)
    ]
