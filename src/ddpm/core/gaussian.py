"""Gaussian data x0 ~ N(μ, s² I), for which the diffusion's optimal network and the data's bits/dim are closed-form:
the reference the math is checked against (the exact ε recovers the analytic bits/dim through the whole bound,
and the ODE samplers' errors fall at their orders). Not a model of images."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .diffusion import GaussianDiffusion

MU, S = 0.1, 0.2  # the default Gaussian data: x0 ~ N(MU, S² I)


def gaussian_eps_model(
    diffusion: GaussianDiffusion, mu: float = MU, s: float = S, exact_variance: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The optimal ε for Gaussian data: E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ).

    With ``exact_variance`` it also outputs the true log Var[x_{t−1} | x_t] = log(β̃ + coef1² Var[x0 | x_t])
    (for ``var_type="learned"``), making the reverse process exact.
    """

    def arr(name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(getattr(diffusion, name)).to(x)[t].view(-1, 1, 1, 1)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = arr("alphas_cumprod", t, x)
        eps = torch.sqrt(1 - a) * (x - torch.sqrt(a) * mu) / (a * s * s + 1 - a)
        if not exact_variance:
            return eps
        var_x0 = s * s * (1 - a) / (a * s * s + 1 - a)
        var = arr("posterior_variance", t, x) + arr("posterior_mean_coef1", t, x) ** 2 * var_x0
        return torch.cat([eps, torch.log(var).expand_as(x)], 1)

    return model


def discrete_gaussian_bpd(x0: torch.Tensor, mu: float = MU, s: float = S) -> float:
    """Exact NLL in bits/dim of 256-level data under the discretized N(mu, s²) (the analytic bits/dim)."""
    half = 1.0 / 255.0

    def cdf(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + torch.erf((v - mu) / (s * math.sqrt(2))))

    p = cdf(x0 + half) - cdf(x0 - half)
    return float(-torch.log(p).mean() / math.log(2))
