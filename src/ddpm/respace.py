"""Respacing (iDDPM §4): a diffusion over a subset of the original timesteps."""

from __future__ import annotations

import numpy as np
import torch

from .diffusion import GaussianDiffusion


def space_timesteps(num_timesteps: int, section_counts: str | list[int]) -> list[int]:
    """The kept step indices: ``"ddimN"`` (a uniform stride giving exactly N steps) or counts per equal section.

    ``"10,10,10"`` splits 0..T−1 into three sections and keeps 10 evenly spaced steps in each (iDDPM §4).
    """
    if isinstance(section_counts, str):
        spec = section_counts.strip()
        if spec.startswith("ddim"):
            wanted = int(spec[len("ddim") :])
            for stride in range(1, num_timesteps + 1):
                kept = list(range(0, num_timesteps, stride))
                if len(kept) == wanted:
                    return kept
            raise ValueError(f"respacing: no integer stride gives exactly {wanted} of {num_timesteps} steps")
        try:
            counts = [int(c) for c in spec.split(",")]
        except ValueError:
            raise ValueError(
                f"respacing: cannot parse {section_counts!r}; use e.g. '250', '10,10,10' or 'ddim50'"
            ) from None
    else:
        counts = [int(c) for c in section_counts]
    sizes = [num_timesteps // len(counts) + (1 if i < num_timesteps % len(counts) else 0) for i in range(len(counts))]
    kept, start = [], 0
    for size, count in zip(sizes, counts, strict=True):
        if count < 1 or count > size:
            raise ValueError(f"respacing: cannot keep {count} steps of a section of {size}")
        if count == 1:
            kept.append(start)
        else:
            stride = (size - 1) / (count - 1)
            kept.extend(start + round(i * stride) for i in range(count))
        start += size
    return kept


class SpacedDiffusion(GaussianDiffusion):
    """The process over the kept steps k_1 < … < k_S, with β_i = 1 − ᾱ_{k_i} / ᾱ_{k_{i−1}} (iDDPM §4).

    ᾱ at every kept step equals the original's, and the model is still called with the original indices.
    """

    def __init__(self, base: GaussianDiffusion, use_timesteps):
        kept = sorted(set(int(k) for k in use_timesteps))
        if not kept or kept[0] < 0 or kept[-1] >= base.num_timesteps:
            raise ValueError(f"use_timesteps: must be a non-empty subset of 0..{base.num_timesteps - 1}")
        alphas_cumprod = base.alphas_cumprod[kept]
        betas = 1.0 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])
        super().__init__(
            betas,
            mean_type=base.mean_type,
            var_type=base.var_type,
            loss_type=base.loss_type,
            hybrid_lambda=base.hybrid_lambda,
        )
        # Indices into the original process (composes when ``base`` is itself spaced).
        self.timestep_map = np.asarray(getattr(base, "timestep_map", np.arange(base.num_timesteps)))[kept]
        self.original_num_timesteps = getattr(base, "original_num_timesteps", base.num_timesteps)

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.timestep_map).to(t.device)[t]
