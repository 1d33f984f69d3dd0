"""Sampling loops: ancestral (DDPM Algorithm 2, any respacing) and DDIM (generation and encoding), and ``sample``,
the one call that draws images with the sampler the options name (the ODE solvers of ``solvers`` included)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .diffusion import GaussianDiffusion, Model, standard_normal
from .options import (
    ODE_SOLVERS,
    SIGMA_HAT,
    End,
    Eta,
    Inversion,
    OptionError,
    Sampler,
    TimeSpacing,
    VarType,
    check_eta,
    default_clip,
)
from .respace import SpacedDiffusion
from .solvers import ode_sample
from .spacing import Skip, ddim_timesteps, space_timesteps

NoiseFn = Callable[[], torch.Tensor]
Shape = tuple[int, ...]
Device = str | torch.device | None
Step = dict[str, Any]  # what a progressive sampler yields: {"t": int, "sample": x, "pred_xstart": x̂0, ...}


def _last(steps: Iterator[Step]) -> Step:
    """The final item of a progressive sampler, without keeping the others."""
    return deque(steps, maxlen=1)[0]


def _start(
    shape: Shape,
    noise: torch.Tensor | None,
    generator: torch.Generator | None,
    device: Device,
    dtype: torch.dtype,
    noise_fn: NoiseFn | None = None,
) -> torch.Tensor:
    """x_T: ``noise`` as given, or ``noise_fn()``, or drawn from ``generator`` onto ``device``."""
    if noise is not None:
        return noise
    if noise_fn is not None:
        return noise_fn()
    return standard_normal(shape, generator=generator, device=device, dtype=dtype)


def _step_noise(x: torch.Tensor, generator: torch.Generator | None, noise_fn: NoiseFn | None) -> torch.Tensor:
    """Fresh noise for one step: from ``noise_fn`` (e.g. one generator per image) or from ``generator``."""
    if noise_fn is not None:
        return noise_fn()
    return standard_normal(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _steps(diffusion: GaussianDiffusion, n: int, device: Device) -> Iterator[tuple[int, torch.Tensor]]:
    """T−1, …, 0, each as an int and as the batch's t (made on the device: reading t back would wait for it)."""
    for step in reversed(range(diffusion.num_timesteps)):
        yield step, torch.full((n,), step, device=device, dtype=torch.long)


@torch.no_grad()
def ancestral_sample_progressive(
    diffusion: GaussianDiffusion,
    model: Model,
    shape: Shape,
    *,
    noise: torch.Tensor | None = None,
    clip_denoised: bool = True,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    noise_fn: NoiseFn | None = None,
) -> Iterator[Step]:
    """DDPM Algorithm 2 step by step; yields ``{"t", "sample", "pred_xstart"}`` (DDPM Fig. 6's x̂0 along the chain).
    ``noise_fn()``, if given, draws x_T and every step's noise instead of ``generator``."""
    x = _start(shape, noise, generator, device, dtype, noise_fn)
    for step, t in _steps(diffusion, x.shape[0], x.device):
        z = _step_noise(x, generator, noise_fn)
        out = diffusion.p_sample(model, x, t, clip_denoised=clip_denoised, noise=z)
        x = out["sample"]
        yield {"t": step, **out}


def ancestral_sample(diffusion: GaussianDiffusion, model: Model, shape: Shape, **options: Any) -> torch.Tensor:
    """DDPM Algorithm 2 over all steps of ``diffusion`` (respaced or not); returns x_0 in [-1, 1]."""
    x: torch.Tensor = _last(ancestral_sample_progressive(diffusion, model, shape, **options))["sample"]
    return x


@torch.no_grad()
def ancestral_sample_from(
    diffusion: GaussianDiffusion,
    model: Model,
    x_t: torch.Tensor,
    t_start: Any,
    *,
    clip_denoised: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDPM Algorithm 2 from a step per row: row i is x at step ``t_start[i]`` and joins the chain there, so rows
    from several t (p(x0 | x_t) in DDPM Figs. 7 and 8) decode in one chain of max t + 1 network calls, each call
    on the rows already started. With one t for all rows it draws the noise ``ancestral_sample`` draws."""
    starts = torch.as_tensor(t_start, dtype=torch.long).reshape(-1)
    if starts.numel() != x_t.shape[0]:
        raise ValueError(f"t_start: one step per row expected, got {starts.numel()} for {x_t.shape[0]} rows")
    if int(starts.min()) < 0 or int(starts.max()) >= diffusion.num_timesteps:
        raise ValueError(f"t_start: must be in 0..{diffusion.num_timesteps - 1}, got {starts.tolist()}")
    x = x_t.clone()
    for step in reversed(range(int(starts.max()) + 1)):
        rows = (starts >= step).nonzero().squeeze(1).to(x.device)
        t = torch.full((rows.numel(),), step, device=x.device, dtype=torch.long)
        part = x[rows]
        z = _step_noise(part, generator, None)
        x[rows] = diffusion.p_sample(model, part, t, clip_denoised=clip_denoised, noise=z)["sample"]
    return x


@torch.no_grad()
def ddim_sample_progressive(
    diffusion: GaussianDiffusion,
    model: Model,
    shape: Shape,
    steps: int,
    *,
    eta: Eta = 0.0,
    skip: str | Skip = Skip.UNIFORM,
    noise: torch.Tensor | None = None,
    clip_denoised: bool | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    noise_fn: NoiseFn | None = None,
) -> Iterator[Step]:
    """DDIM eq. 12 over the sub-sequence τ of ``steps`` steps; yields ``{"t", "sample", "pred_xstart"}``.

    ``eta="sigma_hat"`` is DDIM Table 1's σ̂ row: σ̂_τi = √(1 − ᾱ_τi / ᾱ_τi−1), i.e. ancestral sampling of the
    respaced process with σ² = β (larger than η = 1); a learned variance is ignored there. ``clip_denoised=None``
    takes DDIM's code: x̂0 unclipped for η, clipped for σ̂ (its DDPM steps).
    """
    eta = check_eta(eta)
    if clip_denoised is None:
        clip_denoised = default_clip(Sampler.DDIM, eta)
    spaced = SpacedDiffusion(diffusion, ddim_timesteps(diffusion.num_timesteps, steps, skip))
    if eta == SIGMA_HAT:
        learned = spaced.learned_variance
        spaced.var_type = VarType.FIXED_LARGE
        if learned:  # keep the mean channels only
            model = _mean_channels(model)
    x = _start(shape, noise, generator, device, dtype, noise_fn)
    for step, t in _steps(spaced, x.shape[0], x.device):
        z = _step_noise(x, generator, noise_fn) if isinstance(eta, str) or eta > 0 else None
        if isinstance(eta, str):  # SIGMA_HAT
            out = spaced.p_sample(model, x, t, clip_denoised=clip_denoised, noise=z)
        else:
            out = spaced.ddim_step(model, x, t, eta=eta, clip_denoised=clip_denoised, noise=z)
        x = out["sample"]
        yield {"t": int(spaced.timestep_map[step]), **out}


def _mean_channels(model: Model) -> Model:
    def mean_only(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = model(x, t)
        return out[:, : out.shape[1] // 2]

    return mean_only


def ddim_sample(diffusion: GaussianDiffusion, model: Model, shape: Shape, steps: int, **options: Any) -> torch.Tensor:
    """DDIM generation (Song et al. eq. 12) with ``steps`` steps; ``noise`` is the starting x_T."""
    x: torch.Tensor = _last(ddim_sample_progressive(diffusion, model, shape, steps, **options))["sample"]
    return x


@torch.no_grad()
def ddim_encode(
    diffusion: GaussianDiffusion,
    model: Model,
    x0: torch.Tensor,
    steps: int,
    *,
    skip: str | Skip = Skip.UNIFORM,
    clip_denoised: bool = False,
    inversion: str | Inversion = Inversion.EULER,
) -> torch.Tensor:
    """DDIM §5.4: the deterministic (η = 0) encoding x0 → x_T along the same sub-sequence ``ddim_sample`` uses.

    ``inversion``: ``euler`` (DDIM eq. 14 run forward: ε_θ at the step each move starts from; x0 itself has no
    step, so the first move uses τ_1) or ``target`` (ε_θ(x_{τi−1}, τ_i), the step each move ends at).
    """
    inversion = Inversion(inversion)
    spaced = SpacedDiffusion(diffusion, ddim_timesteps(diffusion.num_timesteps, steps, skip))
    x = x0
    for step in range(spaced.num_timesteps):
        t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        source = t if inversion is Inversion.TARGET or step == 0 else t - 1
        x = spaced.ddim_reverse_step(model, x, t, model_t=source, clip_denoised=clip_denoised)["sample"]
    return x


def ddim_reconstruct(
    diffusion: GaussianDiffusion,
    model: Model,
    x0: torch.Tensor,
    steps: int,
    *,
    skip: str | Skip = Skip.UNIFORM,
    inversion: str | Inversion = Inversion.EULER,
) -> torch.Tensor:
    """DDIM §5.4: decode(encode(x0)) with S = ``steps`` and η = 0, unclipped (the inversion's own error)."""
    x_T = ddim_encode(diffusion, model, x0, steps, skip=skip, inversion=inversion)
    return ddim_sample(
        diffusion,
        model,
        x0.shape,
        steps,
        eta=0.0,
        skip=skip,
        noise=x_T,
        clip_denoised=False,
        device=x0.device,
        dtype=x0.dtype,
    )


def ddim_reconstruction_error(
    diffusion: GaussianDiffusion,
    model: Model,
    x0: torch.Tensor,
    steps: int,
    *,
    skip: str | Skip = Skip.UNIFORM,
    inversion: str | Inversion = Inversion.EULER,
) -> torch.Tensor:
    """DDIM Table 2: per-example MSE (pixels scaled to [0, 1]) of ``ddim_reconstruct``."""
    rec = ddim_reconstruct(diffusion, model, x0, steps, skip=skip, inversion=inversion)
    return ((rec - x0) / 2).pow(2).mean(dim=tuple(range(1, x0.ndim)))


def sampling_process(
    diffusion: GaussianDiffusion, steps: int | None = None, respacing: str | None = None
) -> GaussianDiffusion:
    """The process ancestral sampling runs over: respaced (iDDPM §4) when fewer steps or sections are asked for."""
    if respacing or (steps or diffusion.num_timesteps) < diffusion.num_timesteps:
        return SpacedDiffusion(diffusion, space_timesteps(diffusion.num_timesteps, respacing or str(steps)))
    return diffusion


def sample(
    diffusion: GaussianDiffusion,
    model: Model,
    shape: Shape,
    *,
    sampler: str | Sampler,
    steps: int | None = None,
    eta: Eta = 0.0,
    skip: str | Skip = Skip.UNIFORM,
    respacing: str | None = None,
    clip_denoised: bool | None = None,
    spacing: str | TimeSpacing = TimeSpacing.AUTO,
    end: str | End = End.AUTO,
    **options: Any,
) -> torch.Tensor:
    """Images from ``sampler`` with ``steps`` steps (None: all T): DDIM with ``eta`` and ``skip``, ancestral
    sampling respaced by ``respacing`` or to ``steps``, or an ODE solver spending ``steps`` network calls on a grid
    of ``spacing`` that ends at ``end`` (``auto``: the method's authors'); x̂0 clipped as the papers' code did
    unless ``clip_denoised`` says.
    ``options`` go to the sampling loop (``noise_fn``, …)."""
    sampler = Sampler(sampler)
    options["clip_denoised"] = default_clip(sampler, eta) if clip_denoised is None else clip_denoised
    if sampler in ODE_SOLVERS:
        if steps is None:
            raise OptionError("steps", f"{sampler} needs a budget of network calls")
        x_T = _start(
            shape,
            options.get("noise"),
            options.get("generator"),
            options.get("device"),
            options.get("dtype", torch.float32),
            options.get("noise_fn"),
        )
        return ode_sample(
            diffusion, model, x_T, sampler, steps, spacing=spacing, end=end, clip_denoised=options["clip_denoised"]
        )[0]
    if sampler is Sampler.DDIM:
        return ddim_sample(diffusion, model, shape, steps or diffusion.num_timesteps, eta=eta, skip=skip, **options)
    return ancestral_sample(sampling_process(diffusion, steps, respacing), model, shape, **options)
