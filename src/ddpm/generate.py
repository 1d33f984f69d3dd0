"""Drawing N images from a trained model with the configured sampler."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from .config import SampleParams, Sampler
from .diffusion import GaussianDiffusion
from .loader import to_uint8
from .respace import SpacedDiffusion, space_timesteps
from .sampling import ancestral_sample, ddim_sample


def generate(diffusion: GaussianDiffusion, model, cfg: SampleParams, shape: tuple[int, int, int], seed: int,
             num_samples: int | None = None, device: str | torch.device = "cpu") -> np.ndarray:
    """``num_samples`` images as uint8 N×H×W×C; batch b uses the generator seeded with (seed, b)."""
    n = cfg.num_samples if num_samples is None else num_samples
    steps = cfg.steps or diffusion.num_timesteps
    if cfg.sampler is Sampler.ANCESTRAL and (cfg.respacing or steps < diffusion.num_timesteps):
        diffusion = SpacedDiffusion(diffusion, space_timesteps(diffusion.num_timesteps, cfg.respacing or str(steps)))
    out = []
    bar = tqdm(total=n, desc="sample", unit="img", mininterval=2.0)
    for b, start in enumerate(range(0, n, cfg.batch_size)):
        size = min(cfg.batch_size, n - start)
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + b)
        if cfg.sampler is Sampler.DDIM:
            x = ddim_sample(diffusion, model, (size, *shape), steps, eta=cfg.eta, skip=cfg.skip,
                            generator=gen, device=device)
        else:
            x = ancestral_sample(diffusion, model, (size, *shape), generator=gen, device=device)
        out.append(to_uint8(x).cpu().numpy())
        bar.update(size)
    bar.close()
    return np.concatenate(out)


def image_grid(images: np.ndarray, max_images: int = 64) -> np.ndarray:
    """Tile up to ``max_images`` N×H×W×C images into one square-ish H'×W'×C grid with 2-pixel borders."""
    images = images[:max_images]
    n, h, w, c = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + q * (w + 2) : 2 + q * (w + 2) + w] = img
    return grid
