"""Model files: safetensors weights with the network configuration in the header (no pickle)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ddpm.core.unet import UNet, UNetConfig

from .files import atomic_file

# Options added after the first model files were written, with the values those files were trained with.
_BEFORE_OPTIONS = {
    "norm_eps": 1e-5,
    "downsample_padding": "symmetric",
    "time_embedding": "ddpm",
    "time_scale": 1.0,
    "qkv_layout": "qkv",
}


def save_model(model: UNet, path: Path, **meta: str) -> None:
    """Write weights and config atomically (temp file, then rename)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # One metadata key: safetensors writes several keys in hash-map order, which varies between processes, and
    # the same weights must give the same bytes (DVC compares files by hash).
    info = {"unet_config": dataclasses.asdict(model.config), **meta}
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata={"ddpm": json.dumps(info, sort_keys=True)})


def load_model(path: Path, device: str | torch.device) -> UNet:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model: {path} not found; run the train stage")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # noqa: BLE001 - any parse failure means a bad file
        raise ValueError(f"model: {path} is not a valid safetensors file ({err})") from None
    if "ddpm" not in header:
        raise ValueError(f"model: {path} has no ddpm network description in its header; not made by this project")
    cfg = {**_BEFORE_OPTIONS, **json.loads(header["ddpm"])["unet_config"]}
    for key in ("ch_mult", "attn_resolutions"):
        cfg[key] = tuple(cfg[key])
    model = UNet(UNetConfig(**cfg))
    model.load_state_dict(state)
    return model.to(device).eval()
