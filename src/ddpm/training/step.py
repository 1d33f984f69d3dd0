"""One optimisation step of DDPM Algorithm 1 over a global batch, split into micro-batches.

The global batch (``train.batch_size``) is divided over processes and gradient-accumulation steps; each
micro-batch's loss is scaled so that the gradient equals that of the mean loss over the global batch, whatever
the number of processes or accumulation steps (``TrainParams.micro_batch`` splits it).
"""

from __future__ import annotations

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
    step: int,
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], torch.Tensor]:
    """Forward and backward every micro-batch (gradients synchronised on the last only), clip, update.

    Returns the mean weighted loss over this process's micro-batches (a float64 tensor on the device: reading it
    would wait for the step), each micro-batch's loss terms, and the gradient norm before clipping. A non-finite
    loss raises before any parameter changes (the one check per micro-batch that waits for the device).
    """
    optimizer.zero_grad(set_to_none=True)
    total: torch.Tensor | None = None
    terms_list = []
    for i, mb in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with nullcontext() if last else accelerator.no_sync(model):
            terms = diffusion.training_losses(model, mb.x0, mb.t, noise=mb.noise)
            loss = (terms["loss"] * mb.weights).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train: loss is {loss.item()} at step {step}")
            accelerator.backward(loss / len(micro_batches))
        total = loss.detach().double() if total is None else total + loss.detach().double()
        terms_list.append(terms)
    if grad_clip:
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), grad_clip)
    else:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    optimizer.step()
    assert total is not None
    return total / len(micro_batches), terms_list, grad_norm
