"""The probability-flow ODE of a discrete-time diffusion, as the ODE samplers (``solvers``) see it.

The solvers integrate in the half log-SNR λ = log(α/σ), α = √ᾱ, σ = √(1 − ᾱ). A discrete process of T steps
becomes continuous as DPM-Solver's code treats it (its ``NoiseScheduleVP('discrete')``, with its t = (τ + 1) / T):
log α is piecewise linear in a continuous step τ ∈ [0, T − 1] between the integer steps, and the network is
called at that τ (fractional where a grid point falls between steps).

A ``Grid`` is the decreasing list of steps τ where a solver calls the network, and where it ends: at its last step
(DPM-Solver's t_0 = 1/T, x still holds σ_0 of noise) or ``clean`` (one more move to σ = 0, which is the x̂0 of the
last step's network output: DDIM's last step, EDM's last Euler step and diffusers' ``final_sigmas_type="zero"``,
no extra network call).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .diffusion import GaussianDiffusion, Model
from .options import End, MeanType, OptionError, TimeSpacing, parse_enum
from .respace import SpacedDiffusion

KARRAS_RHO = 7.0  # EDM eq. 5 (TimeSpacing.KARRAS)


class NoiseSchedule:
    """α(τ), σ(τ), λ(τ) of a discrete process for a continuous step τ ∈ [0, T − 1], and τ(λ)."""

    def __init__(self, diffusion: GaussianDiffusion):
        if isinstance(diffusion, SpacedDiffusion):
            raise OptionError("sampler", "the ODE solvers take the original process (they choose their own steps)")
        self.num_timesteps = diffusion.num_timesteps
        self.log_alphas = 0.5 * np.log(diffusion.alphas_cumprod)  # float64, decreasing in the step

    def log_alpha(self, tau) -> np.ndarray:
        tau = np.asarray(tau, dtype=np.float64)
        return np.interp(tau, np.arange(self.num_timesteps, dtype=np.float64), self.log_alphas)

    def lam(self, tau) -> np.ndarray:
        """λ = log α − log σ, with σ² = 1 − α²."""
        log_alpha = self.log_alpha(tau)
        return log_alpha - 0.5 * np.log(-np.expm1(2.0 * log_alpha))

    def alpha_sigma(self, tau) -> tuple[np.ndarray, np.ndarray]:
        alpha = np.exp(self.log_alpha(tau))
        return alpha, np.sqrt(-np.expm1(2.0 * self.log_alpha(tau)))

    def inverse_lambda(self, lam) -> np.ndarray:
        """The step τ where λ(τ) = ``lam``: log α = −½ log(1 + e^{−2λ}), then the piecewise-linear log α inverted."""
        log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * np.asarray(lam, dtype=np.float64))
        steps = np.arange(self.num_timesteps, dtype=np.float64)
        return np.interp(log_alpha, self.log_alphas[::-1], steps[::-1])  # log α decreases with τ


@dataclass(frozen=True)
class Grid:
    """The steps τ where a solver calls the network, from x_T's down, and whether it ends ``clean``."""

    steps: np.ndarray
    end: End = End.STEP0

    def __post_init__(self):
        steps = np.asarray(self.steps, dtype=np.float64)
        if steps.ndim != 1 or steps.size < 1 or (np.diff(steps) >= 0).any():
            raise OptionError("grid", f"steps must be strictly decreasing, got {steps.tolist()}")
        if self.end is End.STEP0 and steps.size < 2:
            raise OptionError("grid", "a grid ending at step 0 needs at least two steps")
        object.__setattr__(self, "steps", steps)

    @property
    def moves(self) -> int:
        """Moves between grid steps, plus the move to σ = 0 of a clean end."""
        return len(self.steps) - 1 + (self.end is End.CLEAN)


def time_grid(schedule: NoiseSchedule, points: int, spacing: str | TimeSpacing = TimeSpacing.TIME_UNIFORM,
              end: str | End = End.STEP0) -> Grid:
    """``points`` steps from τ = T − 1 (t_T = 1) down to τ = 0 (t_0 = 1/T), spaced as DPM-Solver's code does in
    its continuous t = (τ + 1) / T (EDM's in σ̃); a ``clean`` end adds the move to σ = 0 after the last one."""
    spacing, end = parse_enum(TimeSpacing, spacing, "spacing"), parse_enum(End, end, "end")
    if points < 2:
        raise OptionError("steps", f"a solver grid needs at least 2 points, got {points}")
    T = schedule.num_timesteps
    t_first, t_last = 1.0, 1.0 / T
    if spacing in (TimeSpacing.LOGSNR, TimeSpacing.KARRAS):
        lam_first, lam_last = schedule.lam(T - 1.0), schedule.lam(0.0)
        if spacing is TimeSpacing.LOGSNR:
            lams = np.linspace(lam_first, lam_last, points)
        else:  # σ̃ = e^{−λ}
            ramp = np.linspace(np.exp(-lam_first / KARRAS_RHO), np.exp(-lam_last / KARRAS_RHO), points)
            lams = -KARRAS_RHO * np.log(ramp)
        taus = schedule.inverse_lambda(lams)
        taus[0], taus[-1] = T - 1.0, 0.0  # exact ends (the inverse is exact only up to rounding)
    elif spacing is TimeSpacing.TIME_QUADRATIC:
        taus = np.linspace(np.sqrt(t_first), np.sqrt(t_last), points) ** 2 * T - 1.0
    else:
        taus = np.linspace(t_first, t_last, points) * T - 1.0
    return Grid(taus, end)


def as_tensor(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(value, dtype=like.dtype, device=like.device)


class Evaluations:
    """The network's x̂0 and ε at a continuous step τ, whatever it predicts (ε, x0 or v), counted: every call is
    one network function evaluation (NFE). With ``clip``, x̂0 is clipped to [-1, 1] and ε follows from it."""

    def __init__(self, diffusion: GaussianDiffusion, model: Model, clip: bool):
        if diffusion.mean_type is MeanType.PREVIOUS_X:
            raise OptionError("sampler", "a μ̃-predicting network has no probability-flow ODE; use ancestral")
        self.diffusion, self.model, self.clip = diffusion, model, clip
        self.schedule = NoiseSchedule(diffusion)
        self.calls = 0

    def __call__(self, x: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        alpha, sigma = (float(v) for v in self.schedule.alpha_sigma(tau))
        out, _ = self.diffusion.split_output(self.model(x, torch.full((x.shape[0],), tau, device=x.device)))
        if self.diffusion.mean_type is MeanType.EPSILON:
            if not self.clip:
                return (x - sigma * out) / alpha, out
            x0 = (x - sigma * out) / alpha
        elif self.diffusion.mean_type is MeanType.VELOCITY:
            x0 = alpha * x - sigma * out
        else:
            x0 = out
        if self.clip:
            x0 = x0.clamp(-1.0, 1.0)
        return x0, (x - alpha * x0) / sigma
