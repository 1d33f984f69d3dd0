"""MLflow runs of pipeline stages: one parent run per pipeline execution, one child run per stage (``StageRun``),
each recording its host and process, so that runs a killed process left open are closed as KILLED."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import DatasetInput, InputTag, LoggedModelOutput, Metric
from mlflow.tracking import MlflowClient

from ddpm.config import flatten
from ddpm.processes import HOST, alive, dvc_ancestor, identity, project_root

from .stage_params import declared_params
from .store import experiment_id, prepare_store, tracking_uri
from .tracker import Tracker

PIPELINE_KEY_TAG = "ddpm.pipeline_key"
ROLE_TAG = "ddpm.role"  # "pipeline" on parent runs, "stage" on their children
HOST_TAG = "ddpm.host"  # the machine a run's process runs on
PROCESS_TAG = "ddpm.process"  # its process (a stage's own; a pipeline's: the DVC process), as pid:start
PID_TAG = "ddpm.pid"
DESCRIPTION_TAG = "mlflow.note.content"  # the run's description in the UI
SYSTEM_METRICS_INTERVAL_S = 2.0  # CPU, memory, GPU utilisation and memory of compute stages, sampled this often


def pipeline_key(driver: str | None) -> str:
    """What groups the stages of one pipeline execution under one parent run: the DVC process running them
    (``driver``), with the experiment's name; a rerun of the same experiment is another execution."""
    if os.environ.get("DDPM_PIPELINE_RUN"):
        return os.environ["DDPM_PIPELINE_RUN"]
    if os.environ.get("DVC_EXP_NAME"):
        return f"exp:{os.environ['DVC_EXP_NAME']}:{os.environ.get('DVC_EXP_BASELINE_REV', '')}:{driver or ''}"
    return f"dvc:{driver}" if driver else f"local:{uuid.uuid4().hex}"


@dataclass(frozen=True)
class RunContext:
    """Where a stage run belongs: recorded with a spooled log, so a replay files it where the live run would
    have gone (its DVC experiment, its parent, its matrix cell's name)."""

    dvc_experiment: str
    dvc_stage: str
    pipeline_key: str
    git_commit: str
    driver: str  # the identity of the DVC process running the pipeline, or of the stage's own process

    @staticmethod
    def current(stage: str) -> RunContext:
        driver = dvc_ancestor()
        return RunContext(
            os.environ.get("DVC_EXP_NAME", "workspace"),
            os.environ.get("DVC_STAGE", stage),
            pipeline_key(driver),
            git_commit(),
            driver or identity(),
        )


def git_commit() -> str:
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return os.environ["DVC_EXP_BASELINE_REV"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _log_params(client: MlflowClient, run_id: str, params: dict[str, object]) -> None:
    """All of ``params``, in batches of MLflow's limit of 100 per request (params.yaml holds 100 keys)."""
    items = [mlflow.entities.Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def short_name(experiment: str, params: dict) -> str:
    """What a list of runs shows first: the DVC experiment and what sets it apart, e.g.
    ``tiny-linear · tiny, linear, L_simple, 400 steps``."""
    steps = (params.get("train") or {}).get("steps")
    return f"{experiment} · {params.get('profile')}, {params.get('schedule')}, L_{params.get('objective')}" + (
        f", {steps} steps" if steps is not None else ""
    )


def describe(params: dict) -> str:
    """One line naming what a pipeline execution trains and evaluates."""
    return (
        f"{params.get('profile')} profile on {params.get('dataset')}: {params.get('schedule')} schedule, "
        f"T = {params.get('timesteps')}, objective {params.get('objective')}, {params.get('mean_type')} "
        f"prediction, {params.get('variance')} variance"
    )


def close_dead_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the runs of this machine left RUNNING by a process that is gone (a stage killed with SIGKILL, a
    queue worker's experiment killed mid-stage), and the pipeline runs they belong to; returns their ids."""
    query = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{HOST}'"
    closed = []
    for run in client.search_runs([experiment_id], filter_string=query, max_results=1000):
        tags = run.data.tags
        if alive(tags.get(PROCESS_TAG, "")):
            continue
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
        parent = tags.get("mlflow.parentRunId")
        if parent and parent not in closed:
            client.set_terminated(parent, status="KILLED")
            closed.append(parent)
    return closed


def fail_pipeline_run() -> None:
    """Mark FAILED the pipeline run of the current DVC execution, if it has one, for a stage that stops before its
    own run starts (params.yaml refused, the workspace taken by another pipeline): otherwise the runs list shows
    the pipeline FINISHED by its previous stage. Best effort: a store that is missing (no stage has logged yet) or
    out of reach is left alone."""
    key = pipeline_key(dvc_ancestor())
    uri = tracking_uri()
    if key.startswith("local:") or (uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()):
        return
    try:
        client = MlflowClient(uri)
        ids = [e.experiment_id for e in client.search_experiments(filter_string="name LIKE 'ddpm-%'")]
        query = f"tags.`{PIPELINE_KEY_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'pipeline'"
        for run in client.search_runs(ids, filter_string=query, max_results=10) if ids else []:
            client.set_terminated(run.info.run_id, status="FAILED")
    except Exception:  # noqa: BLE001 - the stage's own error line has been printed; the store's state is secondary
        pass


class StageRun(Tracker):
    """A child MLflow run for one stage, under the parent run of the current pipeline execution. The parent
    carries every param, the child the params its stage declares in dvc.yaml; ``purpose`` (one line) starts the
    child's description; ``system_metrics`` samples CPU, memory and GPU while the stage runs. ``context`` says
    where the run belongs (default: the current DVC stage and experiment; a replay passes the recorded one).
    Both runs record their host and process, so that a later stage closes them as KILLED if that process dies."""

    def __init__(
        self,
        stage: str,
        params: dict,
        experiment: str,
        purpose: str = "",
        system_metrics: bool = False,
        context: RunContext | None = None,
    ):
        self.stage, self.params, self.experiment = stage, params, experiment
        self.purpose, self.system_metrics = purpose, system_metrics
        self.context = context or RunContext.current(stage)
        self.client: MlflowClient | None = None
        self.description = ""
        self.run_id: str | None = None
        self.parent_id: str | None = None

    @property
    def pipeline_run_id(self) -> str | None:
        return self.parent_id

    def __enter__(self) -> StageRun:
        uri = tracking_uri()
        prepare_store(uri)
        mlflow.set_tracking_uri(uri)
        self.client = client = MlflowClient()
        exp_id = experiment_id(client, self.experiment)
        close_dead_runs(client, exp_id)
        ctx = self.context
        tags = {
            "git_commit": ctx.git_commit,
            "dvc_experiment": ctx.dvc_experiment,
            "profile": str(self.params.get("profile", "")),
            PIPELINE_KEY_TAG: ctx.pipeline_key,
            HOST_TAG: HOST,
        }
        query = f"tags.`{PIPELINE_KEY_TAG}` = '{ctx.pipeline_key}' and tags.`{ROLE_TAG}` = 'pipeline'"
        found = client.search_runs([exp_id], filter_string=query, max_results=1)
        if found:
            parent_id = found[0].info.run_id
            if found[0].info.status != "RUNNING":  # FINISHED by the previous stage: the pipeline goes on
                client.update_run(parent_id, status="RUNNING")
        else:
            name = short_name(ctx.dvc_experiment, self.params)  # dvc repro (no experiment): workspace · …
            note = f"DVC experiment {ctx.dvc_experiment}: {describe(self.params)}"
            parent_tags = tags | {ROLE_TAG: "pipeline", DESCRIPTION_TAG: note, PROCESS_TAG: ctx.driver}
            parent_id = client.create_run(exp_id, tags=parent_tags, run_name=name).info.run_id
            _log_params(client, parent_id, flatten(self.params))
        self.parent_id = parent_id
        self.description = (
            f"{self.purpose or ctx.dvc_stage}. DVC experiment {ctx.dvc_experiment}, {describe(self.params)}."
        )
        child_tags = tags | {
            "dvc_stage": ctx.dvc_stage,
            ROLE_TAG: "stage",
            "mlflow.parentRunId": self.parent_id,
            DESCRIPTION_TAG: self.description,
            PROCESS_TAG: identity(),
            PID_TAG: str(os.getpid()),
        }
        # named so that a list of runs reads: the stage (a matrix cell's own name) and the experiment
        self.run_id = run_id = client.create_run(
            exp_id, tags=child_tags, run_name=f"{ctx.dvc_stage} · {ctx.dvc_experiment}"
        ).info.run_id
        if self.system_metrics:
            logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its start/stop lines, each stage
            mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
            mlflow.set_system_metrics_samples_before_logging(1)
        mlflow.start_run(run_id=self.run_id, log_system_metrics=self.system_metrics)
        _log_params(client, run_id, declared_params(self.stage, flatten(self.params)))
        return self

    def ids(self) -> tuple[MlflowClient, str, str]:
        """The client, this run's id and its parent's, once entered."""
        if self.client is None or self.run_id is None or self.parent_id is None:
            raise RuntimeError(f"stage run {self.stage}: not started (enter it with `with`)")
        return self.client, self.run_id, self.parent_id

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        stopped = isinstance(exc_type, type) and issubclass(exc_type, KeyboardInterrupt)  # Ctrl-C, SIGTERM
        status = "FINISHED" if exc_type is None else "KILLED" if stopped else "FAILED"
        mlflow.end_run(status=status)
        client, _, parent_id = self.ids()
        client.set_terminated(parent_id, status=status)

    def abandon(self) -> None:
        """Let go of this process's active MLflow run once the store has failed (the stage's log goes on in its
        spool file); MLflow drops it from its stack before trying the store."""
        try:
            mlflow.end_run(status="FAILED")
        except Exception:  # noqa: BLE001 - the store is what failed
            pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
        mlflow.log_metrics(clean, step=step)

    def log_series(self, series: dict[str, list[float]]) -> None:
        """Step-indexed metrics (step = position in each list), sent in batches rather than one call per step."""
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(v), now, step) for key, values in series.items() for step, v in enumerate(values)]
        client, run_id, _ = self.ids()
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_image(self, image: np.ndarray, name: str, step: int | None = None) -> None:
        """An image artifact ``name``; with ``step``, one frame of the step-indexed image series ``name``, whose
        files (the image and its thumbnail) MLflow uploads from a background queue: waited for here, so that a
        stage ending with ``os._exit`` (``exit_now``) cannot cut an upload to a tracking server short."""
        image = image[..., 0] if image.shape[-1] == 1 else image
        if step is None:
            mlflow.log_image(image, name)
        else:
            mlflow.log_image(image, key=name, step=step)
            mlflow.flush_artifact_async_logging()

    def log_table(self, rows: list[dict], name: str) -> None:
        """Rows as an MLflow table artifact (shown in the UI's artifact and evaluation views)."""
        if rows:
            mlflow.log_table({k: [r.get(k) for r in rows] for k in rows[0]}, artifact_file=name)

    def log_json(self, obj, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(obj, indent=2))
            mlflow.log_artifact(str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        mlflow.set_tags(tags)

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Headline metrics, on this run and on the pipeline's parent run (a list of parents compares them)."""
        self.log_metrics(metrics)
        clean = [
            Metric(k, float(v), int(time.time() * 1000), 0)
            for k, v in metrics.items()
            if v is not None and np.isfinite(v)
        ]
        client, _, parent_id = self.ids()
        client.log_batch(parent_id, metrics=clean)
        fid = metrics.get("FID_train")
        if fid is not None and np.isfinite(fid):  # the runs list and the model version say how good it is
            label = f"{short_name(self.context.dvc_experiment, self.params)} · FID {fid:.2f}"
            client.update_run(parent_id, name=label)
            from .registry import note_score

            note_score(client, parent_id, label, metrics)

    def log_dataset(self, name: str, source: str, digest: str, context: str, tags: dict[str, str]) -> None:
        """An MLflow dataset input of this run: what it read (``source``: a folder or URL) and its digest."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        with warnings.catch_warnings():  # "can be interpreted in multiple ways": two local-path resolvers agree
            warnings.simplefilter("ignore", UserWarning)
            # MLflow's MetaDataset declares `profile` abstract yet implements it: instantiable
            dataset = MetaDataset(resolve_dataset_source(source), name=name, digest=digest)  # type: ignore[abstract]
        mlflow.log_input(dataset, context=context, tags=tags)
        client, _, parent_id = self.ids()  # and on the pipeline's run, whose row in the runs list shows its data
        input_tags = [InputTag("mlflow.data.context", context), *(InputTag(k, str(v)) for k, v in tags.items())]
        client.log_inputs(parent_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), input_tags)])

    def log_model(self, weights: Path, params_file: Path, dataset: str, sha256: str) -> None:
        """The EMA weights as an MLflow model of this run, registered as a new version of ``ddpm-<dataset>``."""
        from .registry import log_ema_model

        label = short_name(self.context.dvc_experiment, self.params)
        client, _, parent_id = self.ids()
        description = f"{label}. {self.description}"
        version, model_id = log_ema_model(weights, params_file, dataset, sha256, description, parent_id)
        mlflow.set_tag("ddpm.registered_version", version)
        client.log_outputs(parent_id, models=[LoggedModelOutput(model_id, 0)])  # the runs list's Models column
