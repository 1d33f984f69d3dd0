"""Interpolation in latent space: DDPM §4.3 (through q at step t) and DDIM §5.3 (slerp of x_T)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ddpm.core.diffusion import GaussianDiffusion, Model, standard_normal
from ddpm.core.sampling import ancestral_sample_from, ddim_sample
from ddpm.core.spacing import Skip


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """DDIM §5.3: spherical interpolation, θ = arccos(⟨z0, z1⟩ / ‖z0‖‖z1‖), per example."""
    flat0, flat1 = z0.flatten(1), z1.flatten(1)
    cos = (flat0 * flat1).sum(1) / (flat0.norm(dim=1) * flat1.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1.0, 1.0)).reshape(-1, *([1] * (z0.ndim - 1)))
    sin = torch.sin(theta)
    linear = (1 - alpha) * z0 + alpha * z1
    spherical = (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / sin.clamp(min=1e-12)
    return torch.where(sin.abs() < 1e-6, linear, spherical)


def ddim_interpolate(
    diffusion: GaussianDiffusion,
    model: Model,
    x_T0: torch.Tensor,
    x_T1: torch.Tensor,
    alphas: Sequence[float] | np.ndarray,
    steps: int,
    *,
    skip: str | Skip = Skip.UNIFORM,
    clip_denoised: bool | None = None,
) -> torch.Tensor:
    """DDIM §5.3: decode slerp(x_T0, x_T1, α) deterministically (η = 0) for each α; returns len(α)×N×C×H×W.
    Every α decodes in one batch (one chain of ``steps`` network calls)."""
    latents = torch.cat([slerp(x_T0, x_T1, float(a)) for a in alphas])
    images = ddim_sample(
        diffusion,
        model,
        latents.shape,
        steps,
        eta=0.0,
        skip=skip,
        noise=latents,
        clip_denoised=clip_denoised,
        device=x_T0.device,
        dtype=x_T0.dtype,
    )
    return images.reshape(len(alphas), *x_T0.shape)


def ddpm_interpolate(
    diffusion: GaussianDiffusion,
    model: Model,
    x0_a: torch.Tensor,
    x0_b: torch.Tensor,
    steps: Sequence[int],
    lambdas: Sequence[float] | np.ndarray,
    *,
    generator: torch.Generator | None = None,
    clip_denoised: bool = True,
) -> torch.Tensor:
    """DDPM §4.3: for each t, encode both images to step t with the same noise, mix x̄_t = (1 − λ) x_t + λ x'_t,
    and decode with the reverse process; larger t gives coarser, more novel interpolations. Returns
    len(t)×len(λ)×N×C×H×W. Every (t, λ) decodes in one batch (one chain of max t + 1 network calls)."""
    latents, starts = [], []
    for t in steps:
        t_vec = torch.full((x0_a.shape[0],), t, device=x0_a.device, dtype=torch.long)
        noise = standard_normal(x0_a.shape, generator=generator, device=x0_a.device, dtype=x0_a.dtype)
        xa, xb = diffusion.q_sample(x0_a, t_vec, noise=noise), diffusion.q_sample(x0_b, t_vec, noise=noise)
        latents += [(1 - float(lam)) * xa + float(lam) * xb for lam in lambdas]
        starts += [t] * (len(lambdas) * x0_a.shape[0])
    images = ancestral_sample_from(
        diffusion, model, torch.cat(latents), starts, clip_denoised=clip_denoised, generator=generator
    )
    return images.reshape(len(steps), len(lambdas), *x0_a.shape)
