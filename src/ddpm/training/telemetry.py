"""What a practitioner watches while training: running means of the loss and its parts, and EMA sample grids."""

from __future__ import annotations

import time

import numpy as np
import torch

from ddpm.core.images import to_uint8_numpy
from ddpm.core.sampling import ddim_sample


class Telemetry:
    """Running means between log points: loss, its parts, and the loss per quartile of t (as iDDPM logs it)."""

    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps, self.start = 0, time.perf_counter()

    def _add(self, key: str, total: float, count: int) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + total
        self.counts[key] = self.counts.get(key, 0) + count

    def add(self, loss: float, terms: dict[str, torch.Tensor], t: torch.Tensor) -> None:
        """One optimizer step: its loss, and the per-example terms and timesteps of (all) its micro-batches."""
        self.steps += 1
        self._add("loss", loss, 1)
        for name in ("mse", "vb"):
            if name in terms:
                self._add(name, terms[name].detach().sum().item(), terms[name].numel())
        quartile = (t * 4 // self.num_timesteps).tolist()
        for q, value in zip(quartile, terms["loss"].detach().tolist(), strict=True):
            self._add(f"loss_q{q}", value, 1)

    def summary(self, images_per_step: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {k: self.sums[k] / self.counts[k] for k in sorted(self.sums)}
        out["images_per_second"] = self.steps * images_per_step / elapsed
        if torch.cuda.is_available():
            out["gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return out


@torch.no_grad()
def ema_sample_grid(
    diffusion, ema_model, count: int, shape: tuple[int, int, int], steps: int, seed: int, device
) -> np.ndarray:
    """``count`` DDIM (η = 0) samples of the EMA weights from the same x_T every time, as a uint8 N×H×W×C batch.

    Draws from its own generator, so training's random streams are untouched.
    """
    noise = torch.randn((count, *shape), generator=torch.Generator().manual_seed(seed)).to(device)
    x = ddim_sample(diffusion, ema_model, noise.shape, steps, eta=0.0, noise=noise, device=device)
    return to_uint8_numpy(x)
