"""Respacing (iDDPM §4): a diffusion over a subset of the original timesteps (chosen by ``spacing``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .diffusion import GaussianDiffusion
from .options import OptionError


class SpacedDiffusion(GaussianDiffusion):
    """The process over the kept steps k_1 < … < k_S, with β_i = 1 − ᾱ_{k_i} / ᾱ_{k_{i−1}} (iDDPM §4).

    ᾱ at every kept step equals the original's, and the model is still called with the original indices.
    """

    def __init__(self, base: GaussianDiffusion, use_timesteps: Iterable[int]):
        kept = sorted(set(int(k) for k in use_timesteps))
        if not kept or kept[0] < 0 or kept[-1] >= base.num_timesteps:
            raise OptionError("use_timesteps", f"must be a non-empty subset of 0..{base.num_timesteps - 1}")
        alphas_cumprod = base.alphas_cumprod[kept]
        betas = 1.0 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])
        super().__init__(
            betas,
            mean_type=base.mean_type,
            var_type=base.var_type,
            loss_type=base.loss_type,
            hybrid_lambda=base.hybrid_lambda,
            decoder_cdf=base.decoder_cdf,
        )
        # Indices into the original process (composes when ``base`` is itself spaced).
        self.timestep_map = np.asarray(getattr(base, "timestep_map", np.arange(base.num_timesteps)))[kept]
        self.original_num_timesteps = getattr(base, "original_num_timesteps", base.num_timesteps)
        self._device_maps: dict[torch.device, torch.Tensor] = {}

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The original process's timesteps of ``t``; the map is copied to each device once, not every step."""
        mapped = self._device_maps.get(t.device)
        if mapped is None:
            mapped = self._device_maps[t.device] = torch.from_numpy(self.timestep_map).to(t.device)
        return mapped[t]
