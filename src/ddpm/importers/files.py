"""Reading a released checkpoint: tensors only (pickles through ``torch.load(weights_only=True)``), the EMA copy
when the file holds one, and a diffusers folder's config and scheduler."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ddpm.storage.files import read_json

from .layouts import SIGNATURES, CheckpointError, Layout


@dataclass(frozen=True)
class RawCheckpoint:
    state: dict[str, torch.Tensor]
    weights: str  # which weights of the file were taken, in words
    config: dict | None = None  # diffusers' config.json
    scheduler: dict | None = None  # diffusers' scheduler_config.json, when present


def _load_pickle(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any refusal or parse failure: not a plain tensor file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused: not a file of plain tensors that torch.load(weights_only=True) reads ({first[:200]})"
        ) from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - any parse failure means a bad file
        raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from None


def _tensors(obj, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: {what} is not a mapping of names to tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel's prefix


def _unwrap(obj, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """A state dict, or DDIM's training checkpoint [model, optimizer, epoch, step, (EMA)]: the EMA copy if any."""
    if isinstance(obj, (list, tuple)):
        if len(obj) >= 5 and isinstance(obj[4], dict):
            return _tensors(obj[4], path, "entry 5 (the EMA copy)"), f"the EMA weights (entry 5 of {len(obj)})"
        if obj:
            raw = f"the raw weights (entry 1 of {len(obj)}; no EMA copy in the file)"
            return _tensors(obj[0], path, "entry 1"), raw
        raise CheckpointError(f"{path}: an empty list, not a checkpoint")
    if isinstance(obj, dict) and "ema" in obj and isinstance(obj["ema"], dict):
        return _tensors(obj["ema"], path, "its 'ema' entry"), "the EMA weights (its 'ema' entry)"
    ema = "EMA weights by the file name" if "ema" in path.name.lower() else "the file's only weights"
    return _tensors(obj, path, "the file"), ema


def _read_json(path: Path) -> dict:
    try:
        value = read_json(path)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return value


def _first(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def read_diffusers_folder(folder: Path) -> RawCheckpoint:
    """A ``UNet2DModel`` folder (or a pipeline folder with ``unet/``), and the scheduler config beside it."""
    unet = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    config = _first(unet / "config.json")
    if config is None:
        raise CheckpointError(f"{folder}: a folder, but no config.json of a diffusers UNet2DModel in it or in unet/")
    weights = _first(unet / "diffusion_pytorch_model.safetensors", unet / "diffusion_pytorch_model.bin")
    if weights is None:
        raise CheckpointError(f"{unet}: no diffusion_pytorch_model.safetensors or .bin beside config.json")
    state = _load_safetensors(weights) if weights.suffix == ".safetensors" else _load_pickle(weights)
    scheduler = _first(
        folder / "scheduler_config.json",
        folder / "scheduler" / "scheduler_config.json",
        unet.parent / "scheduler" / "scheduler_config.json",
    )
    return RawCheckpoint(
        _tensors(state, weights, "the file"),
        f"the weights of {weights.name}",
        _read_json(config),
        _read_json(scheduler) if scheduler else None,
    )


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    path = Path(path)
    if path.is_dir():
        return read_diffusers_folder(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file or folder")
    if path.suffix == ".safetensors":
        return RawCheckpoint(_load_safetensors(path), "the file's only weights")
    state, weights = _unwrap(_load_pickle(path), path)
    return RawCheckpoint(state, weights)


def detect_layout(state: dict[str, torch.Tensor], path: str | Path) -> Layout:
    """The layout whose signature key the state dict holds."""
    found = [layout for layout, key in SIGNATURES.items() if key in state]
    if len(found) != 1:
        shown = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"{path}: cannot tell the layout from its keys ({shown}, ...); set "
            f"model.import_from.format to one of {', '.join(m.value for m in Layout)}"
        )
    return found[0]
