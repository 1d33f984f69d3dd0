"""Gaussian log-likelihood pieces of the variational bound (DDPM §3.3)."""

from __future__ import annotations

import math

import torch

from .options import DecoderCDF


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats.

    Written as ½(expm1(δ) − δ + (mean1 − mean2)² e^−logvar2) with δ = logvar1 − logvar2: exact 0 for equal
    arguments and accurate when the variances are close.
    """
    delta = logvar1 - logvar2
    return 0.5 * (torch.expm1(delta) - delta + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of Φ that DDPM's and iDDPM's code use (max error ≈ 3e-4)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, cdf: DecoderCDF = DecoderCDF.TANH
) -> torch.Tensor:
    """DDPM eq. 13: log p(x0 | x1) per dimension for data on 256 bins in [-1, 1], each bin 2/255 wide.

    The edge bins extend to ±∞, so the 256 probabilities sum to 1. ``log_scale`` is log σ (half the log variance).
    ``cdf``: the references' tanh form with their 1e-12 floors (default, as DDPM's and iDDPM's code), or the
    exact Φ (the bound as written).
    """
    half_bin = 1.0 / 255.0
    inv_std = torch.exp(-log_scale)
    upper = (x - mean + half_bin) * inv_std
    lower = (x - mean - half_bin) * inv_std
    if cdf is DecoderCDF.TANH:
        cdf_upper, cdf_lower = approx_standard_normal_cdf(upper), approx_standard_normal_cdf(lower)
        floor = 1e-12
        return torch.where(
            x < -0.999,
            torch.log(cdf_upper.clamp(min=floor)),
            torch.where(
                x > 0.999,
                torch.log((1.0 - cdf_lower).clamp(min=floor)),
                torch.log((cdf_upper - cdf_lower).clamp(min=floor)),
            ),
        )
    log_cdf_upper = torch.special.log_ndtr(upper)  # log Φ(upper): the x = -1 bin
    log_sf_lower = torch.special.log_ndtr(-lower)  # log (1 − Φ(lower)): the x = +1 bin
    # Interior bins: Φ(upper) − Φ(lower), computed on the side of the mean where it does not cancel.
    mid = torch.where(
        lower > 0,
        torch.special.ndtr(-lower) - torch.special.ndtr(-upper),
        torch.special.ndtr(upper) - torch.special.ndtr(lower),
    )
    log_mid = torch.log(mid.clamp(min=1e-300 if x.dtype == torch.float64 else 1e-12))
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, log_mid))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch."""
    return x.mean(dim=tuple(range(1, x.ndim)))


NATS_PER_BIT = math.log(2.0)
