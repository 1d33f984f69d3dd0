"""The choices of the diffusion core, as enums, and the checks of their values.

Pure Python (no torch), so that the params schema can validate a whole params.yaml with the core's own rules
without importing the math, and the stages that never touch the math (prepare, fid_ref) do not depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum, StrEnum
from typing import Any, TypeVar


class OptionError(ValueError):
    """A bad option value, as ``"key: reason"``; the params schema re-keys it with the params key."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


E = TypeVar("E", bound=Enum)


def parse_enum(enum_cls: type[E], value: Any, key: str) -> E:
    """``enum_cls(value)``, or an OptionError naming ``key`` and the allowed values."""
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise OptionError(key, f"unknown value {value!r}; allowed: {allowed}") from None


class MeanType(StrEnum):
    """What the network's mean output predicts (DDPM §3.2, Table 2)."""

    EPSILON = "eps"  # the noise ε (DDPM eq. 11)
    START_X = "x0"  # the clean image x0
    VELOCITY = "v"  # v = √ᾱ ε − √(1−ᾱ) x0 (Salimans & Ho 2022)
    PREVIOUS_X = "mu"  # the posterior mean μ̃ itself (DDPM's μ̃-prediction baseline)


class VarType(StrEnum):
    """How Σ_θ(x_t, t) is chosen (DDPM §3.2, iDDPM §3.1)."""

    FIXED_SMALL = "fixed_small"  # σ² = β̃_t, the posterior variance
    FIXED_LARGE = "fixed_large"  # σ² = β_t (β̃_1 at t = 1 so the decoder stays sharp)
    LEARNED = "learned"  # the network outputs log σ² directly (DDPM's "learned diagonal Σ")
    LEARNED_RANGE = "learned_range"  # iDDPM eq. 15: interpolate log β_t and log β̃_t

    @property
    def learned(self) -> bool:
        """The network outputs the variance too (2C channels)."""
        return self in (VarType.LEARNED, VarType.LEARNED_RANGE)


class LossType(StrEnum):
    """Training objective (DDPM eq. 14, iDDPM §3.1)."""

    SIMPLE = "simple"  # unweighted MSE on the mean target (L_simple)
    KL = "kl"  # DDPM's "true variational bound" as its code optimises it: L_t of the sampled t (bits/dim)
    VLB = "vlb"  # iDDPM's L_vlb = Σ_t L_t, estimated as T·L_t (its code's rescaled KL)
    HYBRID = "hybrid"  # L_simple + λ L_vlb, with the mean frozen inside L_vlb

    @property
    def bound(self) -> bool:
        """The objective includes the variational bound (so it trains a learned variance)."""
        return self is not LossType.SIMPLE


def check_variance_trainable(var_type: VarType, loss_type: LossType) -> None:
    """A learned variance gets its gradient only from the variational bound (iDDPM §3.1)."""
    if var_type.learned and not loss_type.bound:
        raise OptionError(
            "variance", f"{var_type.value!r} gets no gradient from objective 'simple'; use 'hybrid', 'vlb' or 'kl'"
        )


class DecoderCDF(StrEnum):
    """The normal CDF inside the discretized decoder L_0 (DDPM eq. 13)."""

    TANH = "tanh"  # the tanh approximation of DDPM's and iDDPM's code (the default): bit-matches their NLLs
    EXACT = "exact"  # Φ itself (log_ndtr): the bound as written


class TimestepSamplerType(StrEnum):
    """How training draws t (iDDPM §3.3)."""

    UNIFORM = "uniform"
    LOSS_AWARE = "loss_aware"  # importance sampling with p_t ∝ √E[L_t²]


class Sampler(StrEnum):
    """How images are drawn from a trained model."""

    ANCESTRAL = "ancestral"  # DDPM Algorithm 2 (respaced when fewer steps are asked for, iDDPM §4)
    DDIM = "ddim"  # DDIM eq. 12
    DPM_SOLVER_PP_2M = "dpm_solver_pp_2m"  # DPM-Solver++(2M), multistep, data prediction
    DPM_SOLVER_PP_3M = "dpm_solver_pp_3m"  # DPM-Solver++(3M), multistep, data prediction (DPM-Solver's examples)
    DPM_SOLVER_2 = "dpm_solver_2"  # DPM-Solver-2, singlestep, noise prediction
    DPM_SOLVER_3 = "dpm_solver_3"  # DPM-Solver-3, singlestep, noise prediction
    UNIPC_2 = "unipc_2"  # UniPC-2 (bh2), predictor–corrector
    UNIPC_3 = "unipc_3"  # UniPC-3 (bh2), predictor–corrector
    UNIPC_BH1_2 = "unipc_bh1_2"  # UniPC-2 (bh1: B(h) = h)
    UNIPC_BH1_3 = "unipc_bh1_3"  # UniPC-3 (bh1), as UniPC's unconditional CIFAR-10 script runs it
    HEUN = "heun"  # EDM's Heun step (Algorithm 1, deterministic)


ODE_SOLVERS = (
    Sampler.DPM_SOLVER_PP_2M,
    Sampler.DPM_SOLVER_PP_3M,
    Sampler.DPM_SOLVER_2,
    Sampler.DPM_SOLVER_3,
    Sampler.UNIPC_2,
    Sampler.UNIPC_3,
    Sampler.UNIPC_BH1_2,
    Sampler.UNIPC_BH1_3,
    Sampler.HEUN,
)  # ``solvers.ode_sample``: sample.steps is their budget of calls


class TimeSpacing(StrEnum):
    """How a solver's grid divides [0, T − 1] (DPM-Solver §3.3 and its code's ``skip_type``; EDM eq. 5)."""

    AUTO = "auto"  # each method's authors' choice (``solver_conventions``)
    TIME_UNIFORM = "time_uniform"  # uniform in t (DPM-Solver's recommendation for high-resolution images)
    LOGSNR = "logsnr"  # uniform in λ (DPM-Solver's recommendation for low-resolution images such as CIFAR-10)
    TIME_QUADRATIC = "time_quadratic"  # uniform in √t (DDIM's quadratic skip, continuous)
    KARRAS = "karras"  # uniform in σ̃^(1/ρ), σ̃ = σ/α, ρ = 7, over the process's whole range, at fractional steps
    EDM = "edm"  # EDM's code for a discrete network: ρ = 7 from min(80, σ̃_max) to max(0.002, σ̃_min), each point
    #              rounded to the nearest step's σ̃ (the network runs only at its own noise levels), ending at σ = 0


class End(StrEnum):
    """Where a solver stops."""

    AUTO = "auto"  # each method's authors' choice: at step 0 (DPM-Solver, UniPC), at σ = 0 (EDM's Heun)
    STEP0 = "step0"  # at τ = 0, the first step of the discrete process (DPM-Solver's code: t_0 = 1/T)
    CLEAN = "clean"  # at σ = 0: x̂0 of the last network call (DDIM; EDM; diffusers' final_sigmas_type="zero")


HIGH_RESOLUTION = 128  # DPM-Solver's advice: λ-uniform grids below this many pixels a side, t-uniform from it on


def solver_conventions(
    sampler: str | Sampler, spacing: str | TimeSpacing, end: str | End, resolution: int
) -> tuple[TimeSpacing, End]:
    """The grid spacing and end a sampler takes: explicit values as given; ``auto`` each method's authors' choice.
    EDM's Heun: its own discretization (``edm``), ending at σ = 0. DPM-Solver, DPM-Solver++ and UniPC: uniform in
    λ for images under 128 pixels a side and in t from 128 on (DPM-Solver's advice for low- and high-resolution
    images), ending at step 0 (their ``denoise_to_zero=False``)."""
    sampler = parse_enum(Sampler, sampler, "sampler")
    spacing, end = parse_enum(TimeSpacing, spacing, "spacing"), parse_enum(End, end, "end")
    heun = sampler is Sampler.HEUN
    if spacing is TimeSpacing.AUTO:
        spacing = (
            TimeSpacing.EDM
            if heun
            else TimeSpacing.LOGSNR
            if resolution < HIGH_RESOLUTION
            else TimeSpacing.TIME_UNIFORM
        )
    if end is End.AUTO:
        end = End.CLEAN if spacing is TimeSpacing.EDM else End.STEP0
    if spacing is TimeSpacing.EDM and not heun:
        raise OptionError("spacing", f"edm is EDM's grid for its Heun sampler, not for {sampler}")
    if spacing is TimeSpacing.EDM and end is not End.CLEAN:
        raise OptionError("end", "EDM's grid ends at σ = 0 (clean)")
    return spacing, end


class InferencePrecision(StrEnum):
    """The network's precision when sampling or evaluating the bound; the diffusion math stays float32/64."""

    AUTO = "auto"  # as the device suggests (``ddpm.device_defaults``: bf16 or tf32 on CUDA, fp32 elsewhere)
    FP32 = "fp32"  # IEEE float32 (also on GPUs: ``ddpm.precision``)
    TF32 = "tf32"  # float32 with TensorFloat-32 matmuls and convolutions on Ampere+ GPUs (a 10-bit mantissa)
    BF16 = "bf16"  # bfloat16 autocast, outputs cast back to float32


class Padding(StrEnum):
    """Padding of the U-Net's stride-2 downsampling convolution."""

    SAME = "same"  # TensorFlow 'SAME': zero row and column at the bottom and right only (DDPM)
    SYMMETRIC = "symmetric"  # one zero on every side (iDDPM, PyTorch's padding=1)


class Embedding(StrEnum):
    """The sinusoidal timestep embedding of each codebase (half = dim // 2 frequencies)."""

    DDPM = "ddpm"  # [sin, cos], frequencies exp(−ln 10⁴ · i / (half − 1))
    IDDPM = "iddpm"  # [cos, sin], frequencies exp(−ln 10⁴ · i / half)


class QKVLayout(StrEnum):
    """How the fused 1×1 convolution's 3C output channels split into q, k, v of each head."""

    QKV = "qkv"  # (3, heads, d): all of q, then k, then v (DDPM's separate q, k, v stacked)
    HEADS = "heads"  # (heads, 3, d): q, k, v of head 0, then of head 1, ... (iDDPM's QKVAttention)


def check_unet_geometry(
    ch: int,
    ch_mult: Sequence[int],
    resolution: int,
    attn_resolutions: Sequence[int],
    num_heads: int,
    num_groups: int = 32,
) -> None:
    """The U-Net's shape rules (``ddpm.core.unet``): its levels halve the resolution evenly, every level's width
    splits into the GroupNorm groups, attention sits only at resolutions the network reaches, and its heads split
    each attention width (the middle block always attends)."""
    levels = len(ch_mult)
    if resolution % 2 ** (levels - 1):
        raise OptionError(
            "ch_mult",
            f"{levels} levels halve the resolution {levels - 1} times; resolution "
            f"{resolution} is not divisible by {2 ** (levels - 1)}",
        )
    widths = sorted({ch * m for m in ch_mult})
    if any(w % num_groups for w in widths):
        raise OptionError("ch", f"every level width {widths} must be divisible by {num_groups} groups")
    reached = [resolution // 2**i for i in range(levels)]
    unreached = [r for r in attn_resolutions if r not in reached]
    if unreached:
        raise OptionError(
            "attn_resolutions",
            f"{unreached[0]} is not a resolution the U-Net reaches (it runs at "
            f"{reached}); attention there would silently not be built",
        )
    attended = {ch * ch_mult[-1]} | {ch * m for m, r in zip(ch_mult, reached, strict=True) if r in attn_resolutions}
    for width in sorted(attended):
        if width % num_heads:
            raise OptionError("num_heads", f"{num_heads} does not divide the attention width {width}")


class Inversion(StrEnum):
    """Which network evaluation moves DDIM's encoder x0 → x_T one step (DDIM §5.4)."""

    EULER = "euler"  # DDIM eq. 14 forward: ε_θ at the step the move starts from
    TARGET = "target"  # ε_θ(x_{t−1}, t): the step the move ends at (exactly undone by the same decoding step)


SIGMA_HAT = "sigma_hat"  # DDIM Table 1's σ̂ row: ancestral sampling of the respaced process with σ² = β
Eta = float | str  # DDIM η in [0, 1], or SIGMA_HAT


def check_eta(value: Any) -> Eta:
    """DDIM's η as a float in [0, 1] (numbers written as text too), or ``"sigma_hat"``."""
    if value == SIGMA_HAT:
        return SIGMA_HAT
    try:
        eta = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        eta = float("nan")
    if not 0.0 <= eta <= 1.0:
        raise OptionError("eta", f"must be a number in [0, 1] or '{SIGMA_HAT}' (got {value!r})")
    return eta


def default_clip(sampler: str | Sampler, eta: Eta = 0.0) -> bool:
    """Whether x̂0 is clipped to [-1, 1] as the papers' code did: DDPM's ancestral sampler and DDIM's σ̂ row (its
    DDPM steps) clip; DDIM's generalized steps (any η) and the ODE solvers do not."""
    return Sampler(sampler) is Sampler.ANCESTRAL or eta == SIGMA_HAT
