"""Exponential moving average of model weights (DDPM App. B: decay 0.9999)."""

from __future__ import annotations

import copy
from typing import Generic, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


class EMA(Generic[M]):
    """θ_ema ← decay·θ_ema + (1 − decay)·θ, over all parameters at once (foreach kernels); buffers are copied."""

    def __init__(self, model: M, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema_decay: must be in [0, 1), got {decay}")
        self.decay = decay
        self.model: M = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params: list[torch.Tensor] = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buf, buf in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_buf.copy_(buf)
