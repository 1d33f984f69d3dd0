"""The synthetic ε-network and the draws of the golden arrays from the authors' sampling code
(``tests/core/golden/``): the same network, schedule and noise for their code and ours."""

from __future__ import annotations

import numpy as np
import torch

from ddpm.core.schedules import get_beta_schedule


def synthetic_eps(name: str, T: int, mu: float = 0.1, s: float = 0.5):
    """The optimal ε of Gaussian data N(mu, s²) plus a small nonlinear term, at the step index τ (log α linear
    between integer steps at a fractional τ)."""
    log_alpha = torch.from_numpy(0.5 * np.log(np.cumprod(1.0 - get_beta_schedule(name, T))))

    def eps(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(tau, dtype=torch.float64).reshape(-1)
        lo = t.floor().clamp(0, T - 1).long()
        hi = (lo + 1).clamp(max=T - 1)
        la = log_alpha[lo] + (t - lo) * (log_alpha[hi] - log_alpha[lo])
        a = la.exp().reshape(-1, 1, 1, 1).to(x.dtype)
        sd = (-torch.expm1(2 * la)).sqrt().reshape(-1, 1, 1, 1).to(x.dtype)
        return sd * (x - a * mu) / (a * a * s * s + sd * sd) + 0.05 * torch.tanh(
            1.7 * x + 0.0031 * t.reshape(-1, 1, 1, 1).to(x.dtype)
        )

    return eps


def normal(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The golden arrays' draws: numpy's frozen legacy stream, float64."""
    return torch.from_numpy(np.random.RandomState(seed).standard_normal(shape))


SCHEDULES = {"linear1000": ("linear", 1000), "cosine4000": ("cosine", 4000)}
X_T_SHAPE = (3, 2, 4, 4)
