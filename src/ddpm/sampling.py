"""Sampling loops: ancestral (DDPM Algorithm 2, any respacing) and DDIM (generation and encoding)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from enum import StrEnum

import numpy as np
import torch

from .diffusion import GaussianDiffusion, VarType, parse_enum
from .respace import SpacedDiffusion


class Skip(StrEnum):
    """DDIM sub-sequences τ of length S (DDIM §4.2 and Appendix D.2)."""

    UNIFORM = "uniform"  # τ_i = ⌊i T / S⌋
    QUAD = "quad"  # τ_i = ⌊c i²⌋ reaching 0.8 T


def ddim_timesteps(num_timesteps: int, steps: int, skip: str | Skip = Skip.UNIFORM) -> list[int]:
    """The DDIM sub-sequence τ (0-based original indices), exactly ``steps`` long."""
    skip = parse_enum(Skip, skip, "skip")
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps: must be in 1..{num_timesteps} (T), got {steps}")
    if skip is Skip.UNIFORM:
        seq = np.floor(np.arange(steps) * num_timesteps / steps).astype(np.int64)
    else:
        seq = np.floor(np.linspace(0.0, np.sqrt(num_timesteps * 0.8), steps) ** 2).astype(np.int64)
        if len(set(seq.tolist())) != steps:
            raise ValueError(f"steps: {steps} quadratic DDIM steps collide for T={num_timesteps}; use skip 'uniform'")
    return seq.tolist()


def _last(steps: Iterator[dict]) -> dict:
    """The final item of a progressive sampler, without keeping the others."""
    return deque(steps, maxlen=1)[0]


def _start(diffusion, shape, noise, generator, device, dtype, noise_fn=None):
    if noise is not None:
        return noise
    if noise_fn is not None:
        return noise_fn()
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def _step_noise(x, generator, noise_fn):
    """Fresh noise for one step: from ``noise_fn`` (e.g. one generator per image) or from ``generator``."""
    if noise_fn is not None:
        return noise_fn()
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _steps(diffusion: GaussianDiffusion, n: int, device, t_start: int | None = None) -> Iterator[torch.Tensor]:
    start = diffusion.num_timesteps - 1 if t_start is None else t_start
    if not 0 <= start < diffusion.num_timesteps:
        raise ValueError(f"t_start: must be in 0..{diffusion.num_timesteps - 1}, got {start}")
    for step in reversed(range(start + 1)):
        yield torch.full((n,), step, device=device, dtype=torch.long)


@torch.no_grad()
def ancestral_sample_progressive(
    diffusion, model, shape, noise=None, clip_denoised=True, generator=None, device="cpu", dtype=torch.float32,
    t_start=None, noise_fn=None,
):
    """DDPM Algorithm 2 step by step; yields ``{"t", "sample", "pred_xstart"}`` (DDPM Fig. 6's x̂0 along the chain).

    With ``t_start``, ``noise`` is x at that step and the chain runs from there (DDPM Fig. 7's p(x0 | x_t)).
    ``noise_fn()``, if given, draws x_T and every step's noise instead of ``generator``.
    """
    if t_start is not None and noise is None:
        raise ValueError("t_start: needs the starting x_t as noise")
    x = _start(diffusion, shape, noise, generator, device, dtype, noise_fn)
    for t in _steps(diffusion, x.shape[0], x.device, t_start):
        z = _step_noise(x, generator, noise_fn)
        out = diffusion.p_sample(model, x, t, clip_denoised=clip_denoised, noise=z)
        x = out["sample"]
        yield {"t": int(t[0]), **out}


def ancestral_sample(diffusion, model, shape, noise=None, clip_denoised=True, generator=None, device="cpu",
                     dtype=torch.float32, t_start=None, noise_fn=None):
    """DDPM Algorithm 2 over all steps of ``diffusion`` (respaced or not); returns x_0 in [-1, 1]."""
    steps = ancestral_sample_progressive(diffusion, model, shape, noise, clip_denoised, generator, device, dtype,
                                         t_start, noise_fn)
    return _last(steps)["sample"]


SIGMA_HAT = "sigma_hat"


def _check_eta(eta) -> float | str:
    if eta == SIGMA_HAT:
        return eta
    try:
        value = float(eta)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"eta: must be in [0, 1] or '{SIGMA_HAT}', got {eta!r}")
    return value


@torch.no_grad()
def ddim_sample_progressive(
    diffusion, model, shape, steps, eta=0.0, skip="uniform", noise=None, clip_denoised=True, generator=None,
    device="cpu", dtype=torch.float32, noise_fn=None,
):
    """DDIM eq. 12 over the sub-sequence τ of ``steps`` steps; yields ``{"t", "sample", "pred_xstart"}``.

    ``eta="sigma_hat"`` is DDIM Table 1's σ̂ row: σ̂_τi = √(1 − ᾱ_τi / ᾱ_τi−1), i.e. ancestral sampling of the
    respaced process with σ² = β (larger than η = 1).
    """
    eta = _check_eta(eta)
    spaced = SpacedDiffusion(diffusion, ddim_timesteps(diffusion.num_timesteps, steps, skip))
    if eta == SIGMA_HAT:
        spaced.var_type = VarType.FIXED_LARGE
    x = _start(spaced, shape, noise, generator, device, dtype, noise_fn)
    for t in _steps(spaced, x.shape[0], x.device):
        z = _step_noise(x, generator, noise_fn) if eta == SIGMA_HAT or eta > 0 else None
        if eta == SIGMA_HAT:
            out = spaced.p_sample(model, x, t, clip_denoised=clip_denoised, noise=z)
        else:
            out = spaced.ddim_step(model, x, t, eta=eta, clip_denoised=clip_denoised, noise=z)
        x = out["sample"]
        yield {"t": int(spaced.timestep_map[int(t[0])]), **out}


def ddim_sample(diffusion, model, shape, steps, eta=0.0, skip="uniform", noise=None, clip_denoised=True,
                generator=None, device="cpu", dtype=torch.float32, noise_fn=None):
    """DDIM generation (Song et al. eq. 12) with ``steps`` steps; ``noise`` is the starting x_T."""
    return _last(ddim_sample_progressive(
        diffusion, model, shape, steps, eta, skip, noise, clip_denoised, generator, device, dtype, noise_fn
    ))["sample"]


@torch.no_grad()
def ddim_encode(diffusion, model, x0, steps, skip="uniform", clip_denoised=False):
    """DDIM §5.4: the deterministic (η = 0) encoding x0 → x_T along the same sub-sequence ``ddim_sample`` uses."""
    spaced = SpacedDiffusion(diffusion, ddim_timesteps(diffusion.num_timesteps, steps, skip))
    x = x0
    for step in range(spaced.num_timesteps):
        t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        x = spaced.ddim_reverse_step(model, x, t, clip_denoised=clip_denoised)["sample"]
    return x


def ddim_reconstruct(diffusion, model, x0, steps, skip="uniform"):
    """DDIM §5.4: decode(encode(x0)) with S = ``steps`` and η = 0, unclipped (the inversion's own error)."""
    x_T = ddim_encode(diffusion, model, x0, steps, skip)
    return ddim_sample(diffusion, model, x0.shape, steps, eta=0.0, skip=skip, noise=x_T, clip_denoised=False,
                       device=x0.device, dtype=x0.dtype)


def ddim_reconstruction_error(diffusion, model, x0, steps, skip="uniform"):
    """DDIM Table 2: per-example MSE (pixels scaled to [0, 1]) of ``ddim_reconstruct``."""
    rec = ddim_reconstruct(diffusion, model, x0, steps, skip)
    return ((rec - x0) / 2).pow(2).mean(dim=tuple(range(1, x0.ndim)))
