"""The papers' qualitative figures as uint8 image arrays (no file I/O): progressive generation (DDPM Fig. 6),
samples sharing a latent x_t (DDPM Fig. 7), interpolations (DDPM Fig. 8 coarse-to-fine, DDIM Fig. 6 slerp), and
DDIM reconstructions (DDIM Table 2)."""

from __future__ import annotations

import numpy as np
import torch

from .interpolation import ddim_interpolate, ddpm_interpolate
from .loader import to_uint8
from .sampling import ancestral_sample, ancestral_sample_progressive, ddim_reconstruct

# DDIM Table 2's numbers of steps
RECONSTRUCTION_STEPS = (10, 20, 50, 100, 200, 500, 1000)


def latent_timesteps(num_timesteps: int, fractions: list[float]) -> list[int]:
    """0-based steps t = fraction × T (DDPM Fig. 7 uses T/4 … T), distinct and in increasing order."""
    return sorted({min(num_timesteps - 1, max(0, round(f * num_timesteps) - 1)) for f in fractions})


def rows_image(rows: list[np.ndarray], border: int = 2) -> np.ndarray:
    """Tile equal-length rows of N×H×W×C uint8 images into one H'×W'×C image (row r, column c = rows[r][c])."""
    n, h, w, c = rows[0].shape
    out = np.full((len(rows) * (h + border) + border, n * (w + border) + border, c), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for q, img in enumerate(row):
            y, x = border + r * (h + border), border + q * (w + border)
            out[y : y + h, x : x + w] = img
    return out


def _uint8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x).cpu().numpy()


@torch.no_grad()
def progressive_generation(diffusion, model, shape, count: int, frames: int, generator) -> np.ndarray:
    """DDPM Fig. 6: x̂0 predicted along one reverse chain per row, at ``frames`` evenly spaced steps (T → 0)."""
    T = diffusion.num_timesteps
    keep = set(np.linspace(T - 1, 0, frames).round().astype(int).tolist())
    chain = ancestral_sample_progressive(diffusion, model, (count, *shape), generator=generator)
    columns = [_uint8(step["pred_xstart"]) for step in chain if step["t"] in keep]
    return rows_image([np.stack(c) for c in zip(*columns, strict=True)])


@torch.no_grad()
def shared_latent_samples(diffusion, model, x0: torch.Tensor, steps: list[int], per_latent: int,
                          generator) -> np.ndarray:
    """DDPM Fig. 7: for one image x0 and each t, the latent x_t ~ q(x_t | x0) (first column) and ``per_latent``
    samples of p(x0 | x_t) from it; a row per t. Larger t keeps only coarse attributes."""
    rows = []
    for t in steps:
        t_vec = torch.full((1,), t, dtype=torch.long)
        x_t = diffusion.q_sample(x0[:1], t_vec, generator=generator)
        starts = x_t.expand(per_latent, *x_t.shape[1:]).contiguous()
        samples = ancestral_sample(diffusion, model, starts.shape, noise=starts, generator=generator, t_start=t)
        rows.append(np.concatenate([_uint8(x_t.clamp(-1, 1)), _uint8(samples)]))
    return rows_image(rows)


@torch.no_grad()
def ddpm_interpolations(diffusion, model, x0_a: torch.Tensor, x0_b: torch.Tensor, steps: list[int], count: int,
                        generator) -> np.ndarray:
    """DDPM Fig. 8: a row per t — source a, ``count`` decodings of (1 − λ) x_t + λ x'_t for λ from 0 to 1,
    source b."""
    lambdas = np.linspace(0.0, 1.0, count)
    rows = []
    for t in steps:
        mixed = ddpm_interpolate(diffusion, model, x0_a[:1], x0_b[:1], t, lambdas, generator=generator)
        rows.append(np.concatenate([_uint8(x0_a[:1]), _uint8(mixed[:, 0]), _uint8(x0_b[:1])]))
    return rows_image(rows)


@torch.no_grad()
def ddim_interpolations(diffusion, model, shape, pairs: int, count: int, steps: int, generator) -> np.ndarray:
    """DDIM Fig. 6: a row per pair of latents x_T, decoded (η = 0, ``steps`` steps) along their slerp."""
    z0 = torch.randn((pairs, *shape), generator=generator)
    z1 = torch.randn((pairs, *shape), generator=generator)
    images = ddim_interpolate(diffusion, model, z0, z1, np.linspace(0.0, 1.0, count), steps)  # count×pairs×…
    return rows_image([_uint8(images[:, i]) for i in range(pairs)])


@torch.no_grad()
def ddim_reconstructions(diffusion, model, x0: torch.Tensor, steps: list[int]) -> tuple[list[dict], np.ndarray]:
    """DDIM Table 2: per S, the mean squared error (pixels in [0, 1]) of decode(encode(x0)) with η = 0, and an
    image with the originals in the first row and one row of reconstructions per S."""
    table, rows = [], [_uint8(x0)]
    for s in steps:
        rec = ddim_reconstruct(diffusion, model, x0, s)
        table.append({"steps": s, "mse": float(((rec - x0) / 2).pow(2).mean())})
        rows.append(_uint8(rec.clamp(-1, 1)))
    return table, rows_image(rows)
