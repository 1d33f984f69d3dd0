"""MLflow's model registry: each train run's EMA model is logged as an MLflow model (``mlflow_model.py``, no
pickle) and registered as a new version of ``ddpm-<dataset>``, tagged with the weights' sha256; the report moves
the alias ``best_fid`` to the version whose evaluated samples have the lowest FID (vs train) among runs of the
dataset with as many samples (FID is biased by the sample count, so only equal counts compare)."""

from __future__ import annotations

import math
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from ddpm.config import experiment_name

from .tracker import MODEL_SHA_TAG

BEST_ALIAS = "best_fid"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
PACKAGE = Path(__file__).resolve().parents[1]  # src/ddpm, shipped with the model as its code
REQUIREMENTS = ("torch", "numpy", "safetensors", "pydantic", "pyyaml", "mlflow")


def registered_name(dataset: str) -> str:
    return experiment_name(dataset)


def _requirements() -> list[str]:
    """Pinned as installed here: given explicitly, MLflow need not load the model to infer them (seconds)."""
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def log_ema_model(
    weights: Path, params_file: Path, dataset: str, sha256: str, description: str, source_run_id: str
) -> tuple[str, str]:
    """Log the weights as an MLflow model of the active run and register it; returns the new version and the
    logged model's id. The model's source is ``source_run_id`` (the pipeline's run): MLflow's runs list shows a
    model in the Models column of its source run, and the version links to that run."""
    name = registered_name(dataset)
    model = mlflow.initialize_logged_model(name="ema_model", source_run_id=source_run_id)
    with warnings.catch_warnings():  # "add type hints to predict": the input is a plain dict, validated there
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.pyfunc.log_model(
            name="ema_model",
            python_model=str(MODEL_CODE),
            code_paths=[str(PACKAGE)],
            artifacts={"weights": str(weights), "params": str(params_file)},
            pip_requirements=_requirements(),
            registered_model_name=name,
            await_registration_for=0,
            model_id=model.model_id,
        )
    client = MlflowClient()
    number = str(info.registered_model_version)
    client.set_model_version_tag(name, number, MODEL_SHA_TAG, sha256)
    client.update_model_version(name, number, description=description)
    if not client.get_registered_model(name).description:
        client.update_registered_model(
            name,
            description=(
                f"EMA weights of ddpm-pipeline's runs on {dataset}, one version per train run (tag {MODEL_SHA_TAG}: "
                f"the safetensors' sha256). Alias {BEST_ALIAS}: the version with the lowest FID (vs train), moved by "
                "the report stage. Load: mlflow.pyfunc.load_model('models:/" + name + "@" + BEST_ALIAS + "')"
            ),
        )
    return number, info.model_id


SCORE_TAGS = ("FID_train", "FID_test", "KID", "NLL_bpd")  # on a model version: the versions table's Tags column


def note_score(client: MlflowClient, parent_id: str, label: str, metrics: dict[str, float] | None = None) -> None:
    """Put ``label`` (the experiment, what sets it apart, its FID) at the head of the description of the model
    version that the pipeline run ``parent_id`` registered, and its headline ``metrics`` (``SCORE_TAGS``, rounded)
    as the version's tags, so that versions tell themselves apart in the UI."""
    trains = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.dvc_stage = 'train'",
        max_results=1,
    )
    version = trains[0].data.tags.get("ddpm.registered_version") if trains else None
    if not version:
        return
    name = registered_name(str(trains[0].data.params.get("dataset", "")))
    current = client.get_model_version(name, version).description or ""
    rest = current.split(". ", 1)[1] if current.startswith(label.split(" · FID")[0]) else current
    client.update_model_version(name, version, description=f"{label}. {rest}")
    for key in SCORE_TAGS:
        value = (metrics or {}).get(key)
        if value is not None and math.isfinite(value):
            client.set_model_version_tag(name, version, key, f"{value:.4g}")


def download_model(uri: str, into: Path) -> tuple[Path, Path]:
    """The weights and params.yaml an MLflow model of this project carries (``models:/…``, ``runs:/…``),
    downloaded into ``into`` from the project's store."""
    from .store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into))) / "artifacts"
    weights, params = sorted(local.glob("*.safetensors")), sorted(local.glob("*.yaml"))  # log_ema_model's two
    if len(weights) != 1 or len(params) != 1:
        raise ValueError(f"{uri}: not a model of this project (one .safetensors and its params.yaml)")
    return weights[0], params[0]
