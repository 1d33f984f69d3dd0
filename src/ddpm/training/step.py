"""One optimisation step of DDPM Algorithm 1 over a global batch, split into micro-batches.

The global batch (``train.batch_size``) is divided over processes and gradient-accumulation steps; each
micro-batch's loss is scaled so that the gradient equals that of the mean loss over the global batch, whatever
the number of processes or accumulation steps (``TrainParams.micro_batch`` splits it).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from accelerate import Accelerator

from ddpm.core.diffusion import GaussianDiffusion


@dataclass
class MicroBatch:
    x0: torch.Tensor
    t: torch.Tensor
    weights: torch.Tensor  # importance weights of the timestep sampler (1 for uniform t)
    noise: torch.Tensor | None = None  # ε; None draws it from the global generator


def build_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam (DDPM App. B: no weight decay, β = (0.9, 0.999)) with the fused kernel (CPU and CUDA)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def optimization_step(
    accelerator: Accelerator,
    model,
    diffusion: GaussianDiffusion,
    optimizer,
    micro_batches: list[MicroBatch],
    grad_clip: float | None,
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], torch.Tensor]:
    """Forward and backward every micro-batch (gradients synchronised on the last only), clip, update.

    Returns the mean weighted loss over this process's micro-batches (a float64 tensor on the device: reading it
    would wait for the step), each micro-batch's loss terms, and the gradient norm before clipping. Nothing here
    waits for the device: a non-finite gradient (the gradients are synchronised, so every process sees it) leaves
    the parameters and Adam's moments as they were, decided on the device by the fused kernel (``found_inf``);
    ``Divergence`` reports it at the next log or checkpoint step.
    """
    optimizer.zero_grad(set_to_none=True)
    total: torch.Tensor | None = None
    terms_list = []
    for i, mb in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with nullcontext() if last else accelerator.no_sync(model):
            terms = diffusion.training_losses(model, mb.x0, mb.t, noise=mb.noise)
            loss = (terms["loss"] * mb.weights).mean()
            accelerator.backward(loss / len(micro_batches))
        total = loss.detach().double() if total is None else total + loss.detach().double()
        terms_list.append(terms)
    if grad_clip:
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), grad_clip)
    else:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert total is not None
    inner = getattr(optimizer, "optimizer", optimizer)  # under Accelerate's wrapper
    # fp16's loss scaler skips steps with non-finite gradients itself; an optimizer without a fused kernel (not
    # the one training builds) cannot skip on the device and steps as usual
    if accelerator.scaler is None and inner.defaults.get("fused"):
        inner.found_inf = (~torch.isfinite(grad_norm)).float()
        try:
            optimizer.step()
        finally:
            del inner.found_inf
    else:
        optimizer.step()
    return total / len(micro_batches), terms_list, grad_norm


class Divergence:
    """The first step whose loss or gradient norm was not finite, kept on the device; ``check`` reads it (and
    every process's count) at log and checkpoint steps, the only time training waits for the device."""

    def __init__(self, device: torch.device, loss_scaled: bool):
        self.loss_scaled = loss_scaled  # fp16: a non-finite gradient is the loss scaler's business, not divergence
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.first = torch.zeros(3, dtype=torch.float64, device=device)  # step, loss, gradient norm

    def add(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        grad_norm = grad_norm.detach().double()
        bad = ~torch.isfinite(loss) if self.loss_scaled else ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        seen = torch.stack([torch.full_like(loss, step), loss, grad_norm])
        self.first = torch.where(bad & (self.count == 0), seen, self.first)
        self.count = self.count + bad.double()

    def check(self, step: int, reduce) -> None:
        """Raise FloatingPointError naming the first non-finite step if any process had one (``reduce``: a sum
        over the processes)."""
        local, (first, loss, grad_norm) = self.count.item(), self.first.tolist()
        if reduce(self.count.clone()).item() == 0:
            return
        if local == 0:
            raise FloatingPointError(f"train: another process's loss was not finite by step {step}")
        if not math.isfinite(loss):
            raise FloatingPointError(f"train: loss is {loss} at step {int(first)}")
        raise FloatingPointError(f"train: the gradient norm is {grad_norm} at step {int(first)}")
