"""The train stage's other road: a released checkpoint imported into the project's model file, checked against the
params (the network's conventions, and a diffusers scheduler's T and β schedule)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddpm.config import Dataset, Params
from ddpm.core.options import VarType
from ddpm.core.schedules import linear_betas
from ddpm.core.unet import count_parameters
from ddpm.data.shards import MANIFEST, read_manifest
from ddpm.factory import unet_config
from ddpm.storage.files import file_digest
from ddpm.storage.model_files import save_model

from . import import_checkpoint
from .layouts import CheckpointError

# diffusers' DDPMScheduler names for the schedules of ``ddpm.core.schedules`` (linear: β from 1e-4 to 0.02 at T = 1000,
# both ends scaled by 1000 / T otherwise).
_SCHEDULES = {"linear": "linear", "squaredcos_cap_v2": "cosine"}


def check_scheduler(scheduler: dict, params: Params, name: str) -> list[str]:
    """The diffusers scheduler config against the params: T and the β schedule must match (they change every
    number); the variance and clipping are sampler choices, returned as notes when they differ."""
    steps = scheduler.get("num_train_timesteps")
    if steps is not None and int(steps) != params.timesteps:
        raise CheckpointError(f"timesteps: {name} was trained with T = {steps}, params.yaml has {params.timesteps}")
    schedule = _SCHEDULES.get(scheduler.get("beta_schedule", "linear"))
    linear_ends = (float(scheduler.get("beta_start", 1e-4)), float(scheduler.get("beta_end", 0.02)))
    ours = linear_betas(params.timesteps)[[0, -1]] if schedule == "linear" else None  # DDPM's ends, × 1000 / T
    if schedule != params.schedule.value or (ours is not None and not np.allclose(linear_ends, ours, rtol=1e-9)):
        raise CheckpointError(
            f"schedule: {name} was trained with beta_schedule {scheduler.get('beta_schedule')!r} "
            f"{linear_ends}, params.yaml has {params.schedule.value!r}"
        )
    notes = []
    variance = {"fixed_small": VarType.FIXED_SMALL, "fixed_large": VarType.FIXED_LARGE}.get(
        scheduler.get("variance_type", "fixed_small")
    )
    if variance is not None and variance is not params.variance:
        notes.append(f"the scheduler samples with variance {variance.value}; params.yaml: {params.variance.value}")
    return notes


def _channels(params: Params, shard_dir: Path) -> int:
    """The images' channels: the shards' where prepare wrote them, else the dataset's (digits: grey; others: RGB)."""
    if (Path(shard_dir) / MANIFEST).is_file():
        return int(read_manifest(shard_dir)["splits"]["train"]["shape"][2])
    return 1 if params.dataset is Dataset.DIGITS else 3


def _imported(params: Params, shard_dir: Path):
    spec = params.model.import_from
    if spec is None or spec.path is None:
        raise ValueError("model.import_from.path: not set; nothing to import")
    imported = import_checkpoint(spec.path, unet_config(params, _channels(params, shard_dir)), spec.format.value)
    notes = check_scheduler(imported.scheduler, params, spec.path) if imported.scheduler else []
    return imported, notes


def check_importable(params: Params, shard_dir: Path) -> None:
    """Fail as ``import_released`` would (an unreadable file, another layout, weights that do not fit the params,
    a scheduler that disagrees), without writing anything: the check stage's test of ``model.import_from``."""
    try:
        _imported(params, shard_dir)
    except ValueError as err:
        raise ValueError(f"model.import_from.path: {err}") from None


def import_released(params: Params, shard_dir: Path, out: Path) -> dict:
    """Import ``model.import_from`` into the model file ``out``; returns what metrics/train.json records."""
    imported, notes = _imported(params, shard_dir)
    source = Path(str(params.model.import_from.path))  # set: _imported refuses an unset path
    digest = file_digest(source) if source.is_file() else ""
    save_model(
        imported.model,
        out,
        imported_from=str(source),
        layout=imported.layout.value,
        sha256=digest,
        weights=imported.weights,
    )
    for line in [f"imported {source} ({imported.layout.value} layout): took {imported.weights}", *notes]:
        print(f"train: {line}")
    return {
        "imported_from": str(source),
        "layout": imported.layout.value,
        "weights": imported.weights,
        "sha256": digest,
        "parameters": count_parameters(imported.model),
        "steps": 0,
    }
