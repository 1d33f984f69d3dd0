"""Drawing images by index: image i takes all its noise (x_T and every step's) from its own generator, seeded by
(seed, i), so its bytes do not depend on the batch it is drawn in, the number of processes, or resumption."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from .diffusion import GaussianDiffusion, Model
from .images import to_uint8_numpy
from .sampling import sample


class Progress(Protocol):
    """A progress bar's ``update`` (tqdm's, or ``ddpm.progress``'s)."""

    def update(self, n: int = 1) -> Any: ...


def image_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def per_image_noise(
    seed: int, indices: range, shape: tuple[int, ...], device: str | torch.device
) -> Callable[[], torch.Tensor]:
    """A noise function drawing each image's noise from its own generator (seeded by its index)."""
    generators = [torch.Generator().manual_seed(image_seed(seed, i)) for i in indices]

    def draw() -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)

    return draw


@torch.no_grad()
def generate(
    diffusion: GaussianDiffusion,
    model: Model,
    shape: tuple[int, int, int],
    *,
    seed: int,
    start: int,
    count: int,
    batch_size: int,
    device: str | torch.device,
    progress: Progress | None = None,
    **sampler_options: Any,
) -> np.ndarray:
    """Images start..start+count−1 as uint8 N×H×W×C, in batches of ``batch_size``; ``sampler_options`` choose the
    sampler (``sampling.sample``'s keywords). ``progress``, if given, is updated with each batch's size."""
    out = []
    for lo in range(start, start + count, batch_size):
        indices = range(lo, min(lo + batch_size, start + count))
        noise_fn = per_image_noise(seed, indices, shape, device)
        x = sample(diffusion, model, (len(indices), *shape), device=device, noise_fn=noise_fn, **sampler_options)
        out.append(to_uint8_numpy(x))
        if progress is not None:
            progress.update(len(indices))
    return np.concatenate(out)
