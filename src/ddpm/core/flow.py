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
import numpy.typing as npt
import torch

from .diffusion import GaussianDiffusion, Model
from .options import End, MeanType, OptionError, TimeSpacing, parse_enum
from .respace import SpacedDiffusion

KARRAS_RHO = 7.0  # EDM eq. 5 (TimeSpacing.KARRAS, TimeSpacing.EDM)
EDM_SIGMA_RANGE = (0.002, 80.0)  # EDM's sampler: σ̃ kept within these, and within the network's own levels


class NoiseSchedule:
    """α(τ), σ(τ), λ(τ) of a discrete process for a continuous step τ ∈ [0, N − 1], and τ(λ). N is the process's
    T, or with ``clip_lambda`` the steps whose λ is at least that (DPM-Solver's code clips λ at −5.1, which drops
    the last steps of a cosine schedule, where λ falls to −11 and x barely changes: its ``numerical_clip_alpha``);
    the continuous time t = (τ + 1)/N then spans the kept steps."""

    def __init__(self, diffusion: GaussianDiffusion, clip_lambda: float | None = None):
        if isinstance(diffusion, SpacedDiffusion):
            raise OptionError("sampler", "the ODE solvers take the original process (they choose their own steps)")
        log_alphas = 0.5 * np.log(diffusion.alphas_cumprod)  # float64, decreasing in the step
        if clip_lambda is not None:
            lams = log_alphas - 0.5 * np.log(-np.expm1(2.0 * log_alphas))
            log_alphas = log_alphas[: len(log_alphas) - int(np.sum(lams < clip_lambda))]
        self.log_alphas = log_alphas
        self.num_timesteps = len(log_alphas)

    def log_alpha(self, tau: npt.ArrayLike) -> np.ndarray:
        out: np.ndarray = np.interp(
            np.asarray(tau, dtype=np.float64), np.arange(self.num_timesteps, dtype=np.float64), self.log_alphas
        )
        return out

    def lam(self, tau: npt.ArrayLike) -> np.ndarray:
        """λ = log α − log σ, with σ² = 1 − α²."""
        log_alpha = self.log_alpha(tau)
        return log_alpha - 0.5 * np.log(-np.expm1(2.0 * log_alpha))

    def alpha_sigma(self, tau: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        alpha = np.exp(self.log_alpha(tau))
        return alpha, np.sqrt(-np.expm1(2.0 * self.log_alpha(tau)))

    def inverse_lambda(self, lam: npt.ArrayLike) -> np.ndarray:
        """The step τ where λ(τ) = ``lam``: log α = −½ log(1 + e^{−2λ}), then the piecewise-linear log α inverted."""
        log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * np.asarray(lam, dtype=np.float64))
        steps = np.arange(self.num_timesteps, dtype=np.float64)
        return np.interp(log_alpha, self.log_alphas[::-1], steps[::-1])  # log α decreases with τ

    def sigma_tilde(self, tau: npt.ArrayLike) -> np.ndarray:
        """σ̃ = σ/α = e^{−λ}, EDM's noise level."""
        out: np.ndarray = np.exp(-self.lam(tau))
        return out


@dataclass(frozen=True)
class Grid:
    """The steps τ where a solver calls the network, from x_T's down, and whether it ends ``clean``; x_T is scaled
    by ``start_scale`` first (EDM starts from σ_max·z in x/α, i.e. σ(τ_0)·z)."""

    steps: np.ndarray
    end: End = End.STEP0
    start_scale: float = 1.0

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps, dtype=np.float64)
        if steps.ndim != 1 or steps.size < 1 or (np.diff(steps) >= 0).any():
            raise OptionError("grid", f"steps must be strictly decreasing, got {steps.tolist()}")
        if self.end not in (End.STEP0, End.CLEAN):
            raise OptionError("grid", f"a grid ends at step0 or clean, got {self.end}")
        if self.end is End.STEP0 and steps.size < 2:
            raise OptionError("grid", "a grid ending at step 0 needs at least two steps")
        object.__setattr__(self, "steps", steps)

    @property
    def moves(self) -> int:
        """Moves between grid steps, plus the move to σ = 0 of a clean end."""
        return len(self.steps) - 1 + (self.end is End.CLEAN)


def spaced(schedule: NoiseSchedule, first: float, last: float, points: int, spacing: str | TimeSpacing) -> np.ndarray:
    """``points`` steps τ from ``first`` down to ``last`` (both included), spaced as DPM-Solver's code spaces them in
    its continuous t = (τ + 1)/N (``time_uniform``, ``time_quadratic``), in λ (``logsnr``) or in σ̃^(1/ρ)
    (``karras``)."""
    spacing = parse_enum(TimeSpacing, spacing, "spacing")
    N = schedule.num_timesteps
    if spacing in (TimeSpacing.LOGSNR, TimeSpacing.KARRAS):
        lam_first, lam_last = schedule.lam(first), schedule.lam(last)
        if spacing is TimeSpacing.LOGSNR:
            lams = np.linspace(lam_first, lam_last, points)
        else:  # σ̃ = e^{−λ}
            ramp = np.linspace(np.exp(-lam_first / KARRAS_RHO), np.exp(-lam_last / KARRAS_RHO), points)
            lams = -KARRAS_RHO * np.log(ramp)
        taus = schedule.inverse_lambda(lams)
        taus[0], taus[-1] = first, last  # exact ends (the inverse is exact only up to rounding)
        return taus
    t_first, t_last = (first + 1.0) / N, (last + 1.0) / N
    if spacing is TimeSpacing.TIME_QUADRATIC:
        return np.linspace(np.sqrt(t_first), np.sqrt(t_last), points) ** 2 * N - 1.0
    if spacing is TimeSpacing.TIME_UNIFORM:
        return np.linspace(t_first, t_last, points) * N - 1.0
    raise OptionError(
        "spacing", f"{spacing} is no spacing between two steps (time_uniform, time_quadratic, logsnr, karras)"
    )


def edm_grid(schedule: NoiseSchedule, points: int) -> Grid:
    """EDM's discretization of a discrete-time network (its ``edm_sampler`` with ``round_sigma``): ``points`` noise
    levels σ̃ uniform in σ̃^(1/7) from min(80, σ̃ of the last step) to max(0.002, σ̃ of step 0), each rounded to the
    nearest step's σ̃, then σ̃ = 0 (a clean end); x_T is scaled to the first level's σ. Where more levels are asked
    for than the network has near the ends, neighbours round to the same step: EDM's sampler then makes a move of
    length zero, which leaves x as it is (its two calls are spent for nothing), so the grid keeps each step once
    and arrives at the same x with fewer calls."""
    if points < 1:
        raise OptionError("steps", f"EDM's grid needs at least one noise level, got {points}")
    levels = schedule.sigma_tilde(np.arange(schedule.num_timesteps, dtype=np.float64))
    low, high = max(EDM_SIGMA_RANGE[0], levels[0]), min(EDM_SIGMA_RANGE[1], levels[-1])
    index = np.arange(points, dtype=np.float64) / max(points - 1, 1)
    sigmas = (high ** (1 / KARRAS_RHO) + index * (low ** (1 / KARRAS_RHO) - high ** (1 / KARRAS_RHO))) ** KARRAS_RHO
    rounded = np.abs(sigmas[:, None] - levels[None, :]).argmin(axis=1)
    steps = rounded[np.r_[True, np.diff(rounded) != 0]].astype(np.float64)  # non-increasing: repeats are neighbours
    return Grid(steps, End.CLEAN, start_scale=float(schedule.alpha_sigma(steps[0])[1]))


def time_grid(
    schedule: NoiseSchedule,
    points: int,
    spacing: str | TimeSpacing = TimeSpacing.TIME_UNIFORM,
    end: str | End = End.STEP0,
) -> Grid:
    """``points`` steps from τ = N − 1 (t_T = 1) down to τ = 0 (t_0 = 1/N), spaced as DPM-Solver's code does in
    its continuous t = (τ + 1) / N (EDM's in σ̃); a ``clean`` end adds the move to σ = 0 after the last one.
    ``edm`` is EDM's own grid (``edm_grid``)."""
    spacing, end = parse_enum(TimeSpacing, spacing, "spacing"), parse_enum(End, end, "end")
    if spacing is TimeSpacing.EDM:
        if end is not End.CLEAN:
            raise OptionError("end", "EDM's grid ends at σ = 0 (clean)")
        return edm_grid(schedule, points)
    if points < 2:
        raise OptionError("steps", f"a solver grid needs at least 2 points, got {points}")
    return Grid(spaced(schedule, schedule.num_timesteps - 1.0, 0.0, points, spacing), end)


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
        steps = torch.full((x.shape[0],), tau, dtype=torch.float64, device=x.device)  # fractional: keep its digits
        out, _ = self.diffusion.split_output(self.model(x, steps))
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
