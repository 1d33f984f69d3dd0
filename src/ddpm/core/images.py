"""Image conversions between the model's range and uint8, and tiling images into one picture."""

from __future__ import annotations

import numpy as np
import torch


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W → float N×C×H×W in [-1, 1] (DDPM §3.3 scaling)."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float N×C×H×W in [-1, 1] → uint8 N×H×W×C (the layout of sample files), rounding to the nearest level."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def to_uint8_numpy(x: torch.Tensor) -> np.ndarray:
    """``to_uint8`` as a numpy array on the host."""
    return to_uint8(x).cpu().numpy()


DISPLAY_PIXELS = 48  # pictures show every image at least this many pixels wide (CIFAR-10 ×2, 8×8 digits ×6)


def display_scale(size: int) -> int:
    """The integer nearest-neighbour upscaling that makes a ``size``-pixel image ``DISPLAY_PIXELS`` wide or more."""
    return max(1, -(-DISPLAY_PIXELS // size))


def tile(images: np.ndarray, cols: int, border: int = 2, scale: int | None = None) -> np.ndarray:
    """N×H×W×C uint8 images → one picture, image i at row i // cols, column i % cols, each upscaled ``scale`` times
    (nearest; None: ``display_scale``), on white with ``border``-pixel gaps."""
    scale = display_scale(max(images.shape[1:3])) if scale is None else scale
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + border) + border, cols * (w + border) + border, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        y, x = border + r * (h + border), border + q * (w + border)
        out[y : y + h, x : x + w] = img
    return out


def image_grid(images: np.ndarray, max_images: int = 64, scale: int | None = None) -> np.ndarray:
    """Up to ``max_images`` images in a square-ish grid (upscaled as ``tile`` says)."""
    images = images[:max_images]
    return tile(images, int(np.ceil(np.sqrt(images.shape[0]))), scale=scale)


def rows_image(rows: list[np.ndarray], scale: int | None = None) -> np.ndarray:
    """Equal-length rows of N×H×W×C images as one picture (row r, column c = rows[r][c]), upscaled as ``tile``
    says."""
    return tile(np.concatenate(rows), cols=rows[0].shape[0], scale=scale)
