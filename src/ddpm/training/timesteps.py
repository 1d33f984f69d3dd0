"""The distributions training draws timesteps t from: uniform, and loss-aware importance sampling (iDDPM §3.3).

Each draws t with probabilities p_t and returns importance weights w_t = 1 / (T p_t), so that
E_{t∼p}[w_t L_t] = (1/T) Σ_t L_t for any p: the reweighted loss is unbiased for the uniform objective.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ddpm.core.options import TimestepSamplerType, parse_enum

from .transfer import to_device


class UniformTimesteps:
    learns_from_losses = False  # whether ``update`` needs every process's (t, loss) after each step

    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps

    def probabilities(self) -> np.ndarray:
        return np.full(self.num_timesteps, 1.0 / self.num_timesteps)

    def draw(self, batch_size: int, device, generator: torch.Generator | None = None):
        """(t, weights): t drawn from p, weights 1 / (T p_t) (float32)."""
        p = torch.from_numpy(self.probabilities())
        t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        weights = (1.0 / (self.num_timesteps * p[t])).float()
        return to_device(t, device), to_device(weights, device)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record per-example losses; ``t`` and ``losses`` must already hold every process's batch."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LossAwareTimesteps(UniformTimesteps):
    """iDDPM §3.3: p_t ∝ √E[L_t²] over the last ``history`` losses of each t, uniform until every t has them all,
    mixed with ``uniform_prob`` of the uniform distribution.

    Call ``update`` with the same gathered (t, loss) pairs on every process, so that all processes hold the same
    history and draw from the same p (the training loop gathers them across processes).
    """

    learns_from_losses = True

    def __init__(self, num_timesteps: int, history: int = 10, uniform_prob: float = 0.001):
        super().__init__(num_timesteps)
        self.history_size = history
        self.uniform_prob = uniform_prob
        self.history = np.zeros((num_timesteps, history), dtype=np.float64)
        self.counts = np.zeros(num_timesteps, dtype=np.int64)

    def warm(self) -> bool:
        return bool((self.counts == self.history_size).all())

    def probabilities(self) -> np.ndarray:
        if not self.warm():
            return super().probabilities()
        p = np.sqrt(np.mean(self.history**2, axis=1))
        p = p / p.sum()
        return p * (1 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        for step, loss in zip(t.tolist(), losses.detach().double().cpu().tolist(), strict=True):
            if not math.isfinite(loss):  # a diverged step: training stops at its next log step
                continue
            if self.counts[step] == self.history_size:
                self.history[step, :-1] = self.history[step, 1:]
                self.history[step, -1] = loss
            else:
                self.history[step, self.counts[step]] = loss
                self.counts[step] += 1

    def state_dict(self) -> dict:
        return {"history": self.history.copy(), "counts": self.counts.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.history = np.asarray(state["history"], dtype=np.float64).copy()
        self.counts = np.asarray(state["counts"], dtype=np.int64).copy()


def make_timesteps(kind: str | TimestepSamplerType, num_timesteps: int) -> UniformTimesteps:
    kind = parse_enum(TimestepSamplerType, kind, "timestep_sampler")
    if kind is TimestepSamplerType.LOSS_AWARE:
        return LossAwareTimesteps(num_timesteps)
    return UniformTimesteps(num_timesteps)
