"""Importing the papers' released checkpoints (DDPM via DDIM's port, improved-diffusion, diffusers) into the
project's U-Net, strictly: every tensor placed, every convention of the checkpoint's code matched."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ddpm.core.unet import UNet, UNetConfig

from .files import detect_layout, read_checkpoint
from .layouts import CONVENTIONS, CheckpointError, Layout, check_conventions, convert, diffusers_conventions

__all__ = ["CheckpointError", "Imported", "Layout", "import_checkpoint"]


@dataclass(frozen=True)
class Imported:
    model: UNet  # in eval mode, float32, on the CPU
    layout: Layout
    weights: str  # which weights of the file were taken, in words
    scheduler: dict | None  # a diffusers folder's scheduler config


def import_checkpoint(path: str | Path, cfg: UNetConfig, layout: str | Layout | None = None) -> Imported:
    """The network ``cfg`` with the weights of the checkpoint at ``path``, its layout detected from the keys unless
    given. Whether the network saw t or t · 1000 / T (iDDPM's rescale_timesteps) the file cannot tell: ``cfg``
    says."""
    name = str(path)
    raw = read_checkpoint(path)
    if layout in (None, "auto"):
        layout = detect_layout(raw.state, path)
    else:
        try:
            layout = Layout(layout)
        except ValueError:
            raise CheckpointError(
                f"model.import_from.format: unknown value {layout!r}; allowed: auto, "
                f"{', '.join(m.value for m in Layout)}"
            ) from None
    if layout is Layout.DIFFUSERS and raw.config is not None:
        expected = diffusers_conventions(raw.config, name)
    else:
        expected = dict(CONVENTIONS[layout])
    check_conventions(layout, cfg, name, expected)
    model = UNet(cfg)
    model.load_state_dict(convert(raw.state, layout, cfg, name))
    return Imported(model.eval(), layout, raw.weights, raw.scheduler)
