"""MLflow's model registry: each train run's EMA model is logged as an MLflow model (``mlflow_model.py``, no
pickle) and registered as a new version of ``ddpm-<dataset>``, tagged with the weights' sha256; the report moves
the alias ``best_fid`` to the version whose evaluated samples have the lowest FID (vs train) among runs of the
dataset with as many samples (FID is biased by the sample count, so only equal counts compare)."""

from __future__ import annotations

import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from ddpm.config import experiment_name

BEST_ALIAS = "best_fid"
MODEL_SHA_TAG = "ddpm.model_sha256"  # on model versions and on the evaluate runs of those weights (runner.lineage)
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


def log_ema_model(weights: Path, params_file: Path, dataset: str, sha256: str, description: str) -> str:
    """Log the weights as an MLflow model of the active run and register it; returns the new version."""
    name = registered_name(dataset)
    with warnings.catch_warnings():  # "add type hints to predict": the input is a plain dict, validated there
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.pyfunc.log_model(
            name="ema_model", python_model=str(MODEL_CODE), code_paths=[str(PACKAGE)],
            artifacts={"weights": str(weights), "params": str(params_file)}, pip_requirements=_requirements(),
            registered_model_name=name, await_registration_for=0)
    client = MlflowClient()
    number = str(info.registered_model_version)
    client.set_model_version_tag(name, number, MODEL_SHA_TAG, sha256)
    client.update_model_version(name, number, description=description)
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=(
            f"EMA weights of ddpm-pipeline's runs on {dataset}, one version per train run (tag {MODEL_SHA_TAG}: "
            f"the safetensors' sha256). Alias {BEST_ALIAS}: the version with the lowest FID (vs train), moved by "
            "the report stage. Load: mlflow.pyfunc.load_model('models:/" + name + "@" + BEST_ALIAS + "')"))
    return number


def move_best_alias(experiment: str, dataset: str, num_samples: int) -> str:
    """Point ``best_fid`` at the registered version of the best-FID weights; returns a line saying what it did."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return "no MLflow experiment yet"
    runs = client.search_runs(
        [exp.experiment_id], max_results=200, order_by=["metrics.fid_train ASC"],
        filter_string=f"tags.dvc_stage = 'evaluate' and attributes.status = 'FINISHED' and "
                      f"metrics.num_samples = {int(num_samples)} and tags.`{MODEL_SHA_TAG}` != ''")
    name = registered_name(dataset)
    for run in runs:
        sha = run.data.tags[MODEL_SHA_TAG]
        versions = client.search_model_versions(f"name = '{name}' and tags.`{MODEL_SHA_TAG}` = '{sha}'")
        if versions:
            best = max(versions, key=lambda v: int(v.version))
            client.set_registered_model_alias(name, BEST_ALIAS, best.version)
            fid = run.data.metrics["fid_train"]
            label = run.data.tags.get("dvc_experiment", run.info.run_id[:8])
            return f"alias {BEST_ALIAS} → {name} version {best.version} (FID {fid:.2f}, {num_samples} samples, {label})"
    return f"no registered model of {name} has an evaluated FID over {num_samples} samples"
