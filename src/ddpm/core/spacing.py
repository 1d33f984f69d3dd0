"""Which of the T steps a shorter process keeps: iDDPM §4's respacing and DDIM's sub-sequence τ (numpy only)."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from .options import OptionError, parse_enum


def space_timesteps(num_timesteps: int, section_counts: str | list[int]) -> list[int]:
    """The kept step indices: ``"ddimN"`` (a uniform stride giving exactly N steps) or counts per equal section.

    ``"10,10,10"`` splits 0..T−1 into three sections and keeps 10 evenly spaced steps in each (iDDPM §4).
    """
    if isinstance(section_counts, str):
        spec = section_counts.strip()
        if spec.startswith("ddim"):
            wanted = int(spec[len("ddim") :])
            for every in range(1, num_timesteps + 1):
                kept = list(range(0, num_timesteps, every))
                if len(kept) == wanted:
                    return kept
            raise OptionError("respacing", f"no integer stride gives exactly {wanted} of {num_timesteps} steps")
        try:
            counts = [int(c) for c in spec.split(",")]
        except ValueError:
            raise OptionError(
                "respacing", f"cannot parse {section_counts!r}; use e.g. '250', '10,10,10' or 'ddim50'"
            ) from None
    else:
        counts = [int(c) for c in section_counts]
    if len(counts) == 1 and counts[0] > num_timesteps:
        raise OptionError("respacing", f"{counts[0]} exceeds timesteps ({num_timesteps})")
    sizes = [num_timesteps // len(counts) + (1 if i < num_timesteps % len(counts) else 0) for i in range(len(counts))]
    kept, start = [], 0
    for size, count in zip(sizes, counts, strict=True):
        if count < 1 or count > size:
            raise OptionError("respacing", f"cannot keep {count} steps of a section of {size}")
        # iDDPM's code: a float position advanced by the fractional stride, rounded half to even at each step.
        stride: float = 1 if count == 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return kept


class Skip(StrEnum):
    """DDIM sub-sequences τ of length S (DDIM §4.2 and Appendix D.2). The three uniform rules agree whenever S
    divides T (every S of DDIM's and iDDPM's tables); they differ otherwise."""

    UNIFORM = "uniform"  # τ_i = ⌊i T / S⌋: exactly S steps, as evenly as integers allow
    UNIFORM_DDIM = "uniform_ddim"  # DDIM's code: range(0, T, ⌊T/S⌋), more than S steps when S does not divide T
    UNIFORM_IDDPM = "uniform_iddpm"  # iDDPM's code ("ddimS"): the integer stride giving exactly S steps, if any
    QUAD = "quad"  # τ_i = ⌊c i²⌋ reaching 0.8 T; early steps repeat (a repeated step is a no-op, as in DDIM's code)


def ddim_timesteps(num_timesteps: int, steps: int, skip: str | Skip = Skip.UNIFORM) -> list[int]:
    """The DDIM sub-sequence τ (0-based original indices), non-decreasing; ``steps`` long but for DDIM's own
    uniform rule (``uniform_ddim``: T = 1000, S = 7 gives the 8 steps 0, 142, …, 994, as its code runs them).

    The quadratic τ repeats its first indices when S is large (at T = 1000: S = 50, 100, 1000 of DDIM Table 1);
    DDIM's code keeps them, and a step from τ_i to an equal τ_{i−1} leaves x unchanged, so the sampler runs
    the distinct steps only (``sorted(set(τ))``) and arrives at the same x_0 with fewer network calls.
    """
    skip = parse_enum(Skip, skip, "skip")
    if steps > num_timesteps:
        raise OptionError("steps", f"{steps} exceeds timesteps ({num_timesteps})")
    if steps < 1:
        raise OptionError("steps", f"must be at least 1, got {steps}")
    if skip is Skip.UNIFORM_DDIM:
        return list(range(0, num_timesteps, num_timesteps // steps))
    if skip is Skip.UNIFORM_IDDPM:
        return space_timesteps(num_timesteps, f"ddim{steps}")
    if skip is Skip.UNIFORM:
        seq = np.floor(np.arange(steps) * num_timesteps / steps).astype(np.int64)
    else:
        seq = np.floor(np.linspace(0.0, np.sqrt(num_timesteps * 0.8), steps) ** 2).astype(np.int64)
    return [int(i) for i in seq]
