"""Noise schedules β_1..β_T, computed once in float64."""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np

from .options import OptionError, parse_enum


class Schedule(StrEnum):
    """The noise schedule β_1..β_T."""

    LINEAR = "linear"
    COSINE = "cosine"


def linear_betas(num_timesteps: int) -> np.ndarray:
    """DDPM §4: β linear from 1e-4 to 0.02 at T=1000, rescaled by 1000/T for other T (iDDPM §3.2)."""
    scale = 1000.0 / num_timesteps
    if scale * 0.02 >= 1.0:
        raise OptionError(
            "timesteps",
            f"the linear schedule scaled to T={num_timesteps} reaches β = {scale * 0.02:g} (ᾱ_T = 0); "
            "use T > 20 or the cosine schedule",
        )
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """iDDPM eq. 17: ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T)+s)/(1+s)·π/2); β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped at 0.999."""

    def f(t: np.ndarray) -> np.ndarray:
        return np.cos((t / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    t = np.arange(num_timesteps + 1, dtype=np.float64)
    alphas_cumprod = f(t) / f(np.zeros(1))
    betas: np.ndarray = np.minimum(1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1], max_beta)
    return betas


def get_beta_schedule(name: str | Schedule, num_timesteps: int) -> np.ndarray:
    """The β array of schedule ``name`` ('linear' | 'cosine') for ``num_timesteps`` steps (float64)."""
    schedule = parse_enum(Schedule, name, "schedule")
    if not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise OptionError("timesteps", f"must be a positive integer, got {num_timesteps!r}")
    if schedule is Schedule.LINEAR:
        return linear_betas(num_timesteps)
    return cosine_betas(num_timesteps)
