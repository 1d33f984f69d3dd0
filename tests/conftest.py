import math

import pytest
import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.schedules import get_beta_schedule

MU, S = 0.1, 0.2  # Gaussian data x0 ~ N(MU, S² I)


def gaussian_eps_model(diffusion: GaussianDiffusion, mu=MU, s=S, exact_variance=False):
    """The optimal ε for Gaussian data: E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ).

    With ``exact_variance`` it also outputs the true log Var[x_{t−1} | x_t] = log(β̃ + coef1² Var[x0 | x_t])
    (for ``var_type="learned"``), making the reverse process exact.
    """

    def arr(name, t, x):
        return torch.from_numpy(getattr(diffusion, name)).to(x)[t].view(-1, 1, 1, 1)

    def model(x, t):
        a = arr("alphas_cumprod", t, x)
        eps = torch.sqrt(1 - a) * (x - torch.sqrt(a) * mu) / (a * s * s + 1 - a)
        if not exact_variance:
            return eps
        var_x0 = s * s * (1 - a) / (a * s * s + 1 - a)
        var = arr("posterior_variance", t, x) + arr("posterior_mean_coef1", t, x) ** 2 * var_x0
        return torch.cat([eps, torch.log(var).expand_as(x)], 1)

    return model


def discrete_gaussian_bpd(x0: torch.Tensor, mu=MU, s=S) -> float:
    """Exact NLL in bits/dim of 256-level data under the discretized N(mu, s²) (the analytic bits/dim)."""
    half = 1.0 / 255.0
    cdf = lambda v: 0.5 * (1 + torch.erf((v - mu) / (s * math.sqrt(2))))  # noqa: E731
    p = cdf(x0 + half) - cdf(x0 - half)
    return float(-torch.log(p).mean() / math.log(2))


@pytest.fixture
def gaussian_grid_data():
    g = torch.Generator().manual_seed(0)
    x = MU + S * torch.randn(64, 1, 4, 4, generator=g, dtype=torch.float64)
    return torch.round((x + 1) * 127.5) / 127.5 - 1  # on the 256-level grid


@pytest.fixture
def linear100():
    return GaussianDiffusion(get_beta_schedule("linear", 100))
