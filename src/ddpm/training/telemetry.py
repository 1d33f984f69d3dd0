"""What a practitioner watches while training: running means of the loss and its parts, and EMA sample grids."""

from __future__ import annotations

import time

import numpy as np
import torch

from ddpm.core.images import to_uint8_numpy
from ddpm.core.sampling import ddim_sample


class Telemetry:
    """Running means between log points: loss, its parts, and the loss per quartile of t (as iDDPM logs it).

    Sums stay on the device as float64 tensors, so a training step never waits for the host; ``summary`` reads
    them once per log point, summed over the processes (``reduce``: e.g. ``accelerator.reduce``), so the logged
    loss is the global batch's.
    """

    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.quartile_sums: torch.Tensor | None = None  # float64 [4]: loss sums per quartile of t
        self.quartile_counts: torch.Tensor | None = None
        self.steps, self.start = 0, time.perf_counter()

    def _add(self, key: str, total: torch.Tensor, count: int) -> None:
        total = total.detach().double()
        self.sums[key] = self.sums[key] + total if key in self.sums else total
        self.counts[key] = self.counts.get(key, 0) + count

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], t: torch.Tensor) -> None:
        """One optimizer step: its loss, and the per-example terms and timesteps of (all) its micro-batches."""
        self.steps += 1
        self._add("loss", loss, 1)
        for name in ("mse", "vb"):
            if name in terms:
                self._add(name, terms[name].detach().sum(), terms[name].numel())
        quartile = t * 4 // self.num_timesteps
        losses = terms["loss"].detach().double()
        if self.quartile_sums is None:
            self.quartile_sums = losses.new_zeros(4)
            self.quartile_counts = losses.new_zeros(4)
        self.quartile_sums.index_add_(0, quartile, losses)
        self.quartile_counts.index_add_(0, quartile, torch.ones_like(losses))  # type: ignore[union-attr]

    def summary(self, images_per_step: int, reduce=None) -> dict[str, float]:
        """Means since the last reset (over every process's steps with ``reduce``), and images/s."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        keys = sorted(self.sums)
        if not keys:
            return {"images_per_second": self.steps * images_per_step / elapsed}
        assert self.quartile_sums is not None and self.quartile_counts is not None
        sums = torch.stack([self.sums[k] for k in keys])
        counts = torch.tensor([float(self.counts[k]) for k in keys], dtype=torch.float64, device=sums.device)
        packed = torch.cat([sums, counts, self.quartile_sums, self.quartile_counts])
        if reduce is not None:
            packed = reduce(packed)
        values = packed.tolist()  # the one wait for the device between log points
        n = len(keys)
        out = {k: values[i] / values[n + i] for i, k in enumerate(keys)}
        for q in range(4):
            if values[2 * n + 4 + q]:
                out[f"loss_q{q}"] = values[2 * n + q] / values[2 * n + 4 + q]
        out = {k: out[k] for k in sorted(out)}
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
