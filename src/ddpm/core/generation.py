"""Drawing images by index: image i takes all its noise (x_T and every step's) from its own generator, seeded by
(seed, i), so its bytes do not depend on the batch it is drawn in, the number of processes, or resumption."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import torch

from .diffusion import GaussianDiffusion, Model
from .images import to_uint8_numpy
from .sampling import sample


class Progress(Protocol):
    """A progress bar's ``update`` (tqdm's, or ``ddpm.progress``'s)."""

    def update(self, n: int = 1) -> Any: ...


# Host threads that draw a batch's noise ahead of a GPU (per-image generators, so any count gives the same bytes).
NOISE_THREADS = max(1, min(8, (os.cpu_count() or 1) // 2))


def image_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def per_image_noise(
    seed: int,
    indices: range,
    shape: tuple[int, ...],
    device: str | torch.device,
    ahead: bool | None = None,
    threads: int | None = None,
) -> Callable[[], torch.Tensor]:
    """A noise function drawing each image's noise from its own CPU generator (seeded by its index), so the bytes
    are the same on every device. With ``ahead`` (the default on CUDA) the next call's noise is drawn on helper
    threads into pinned memory while the accelerator works, and copied without blocking the host: ``threads``
    (default ``NOISE_THREADS``) draw the images' rows side by side, each generator on one thread at a time, so a
    batch of 256² images costs a few milliseconds of wall time rather than one thread's 50."""
    generators = [torch.Generator().manual_seed(image_seed(seed, i)) for i in indices]
    device = torch.device(device)
    pinned = device.type == "cuda"

    def fill(rows: torch.Tensor, gens: list[torch.Generator]) -> None:
        for row, g in zip(rows, gens, strict=True):
            torch.randn(shape, generator=g, out=row)

    def draw_cpu() -> torch.Tensor:
        out = torch.empty((len(generators), *shape), pin_memory=pinned)
        fill(out, generators)
        return out

    if not (device.type == "cuda" if ahead is None else ahead):
        return lambda: draw_cpu().to(device)
    workers = max(1, min(threads or NOISE_THREADS, len(generators)))
    fillers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="noise-fill")
    step = -(-len(generators) // workers)
    slices = [slice(k, k + step) for k in range(0, len(generators), step)]

    def draw_side_by_side() -> torch.Tensor:
        out = torch.empty((len(generators), *shape), pin_memory=pinned)
        for done in [fillers.submit(fill, out[s], generators[s]) for s in slices]:
            done.result()  # torch.randn releases the GIL: the slices fill in parallel
        return out

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noise")
    pending: list[Future[torch.Tensor]] = [pool.submit(draw_side_by_side)]

    def draw() -> torch.Tensor:
        noise = pending.pop().result()
        pending.append(pool.submit(draw_side_by_side))  # each generator is used in call order
        return noise.to(device, non_blocking=pinned)

    weakref.finalize(draw, pool.shutdown, wait=False, cancel_futures=True)
    weakref.finalize(draw, fillers.shutdown, wait=False, cancel_futures=True)
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
