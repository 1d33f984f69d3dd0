"""WebDataset readers: an infinite resampled training stream and ordered passes over a split."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from .shards import shard_urls


def decode_uint8(sample: dict) -> tuple[np.ndarray, int]:
    """A shard sample → (H×W×C uint8 image, label)."""
    img = np.asarray(Image.open(io.BytesIO(sample["png"])))
    return (img[..., None] if img.ndim == 2 else img), int(sample["cls"])


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W×C → float N×C×H×W in [-1, 1] (DDPM §3.3 scaling)."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float N×C×H×W in [-1, 1] → uint8 N×H×W×C, rounding to the nearest of 256 levels."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _collate(batch):
    images = torch.from_numpy(np.stack([img for img, _ in batch]))
    labels = torch.tensor([label for _, label in batch])
    return images, labels


def train_stream(shard_dir: Path, batch_size: int, seed: int, rank: int = 0, random_flip: bool = True,
                 shuffle_buffer: int = 5000):
    """Infinite batches (float [-1, 1] N×C×H×W, labels) from shards resampled with a per-rank seed.

    Every rank resamples independently from all shards, so no node splitting is needed (and none is done);
    do not pass the result through ``accelerator.prepare``.
    """
    urls = shard_urls(shard_dir, "train")
    rng = random.Random(seed * 1_000_003 + rank)
    flip_gen = torch.Generator().manual_seed(seed * 1_000_003 + rank)
    pipeline = wds.DataPipeline(
        wds.ResampledShards(urls, seed=seed, worker_seed=lambda: rank, deterministic=True),
        wds.tarfile_to_samples(),
        wds.shuffle(shuffle_buffer, initial=min(shuffle_buffer, 1000), rng=rng),
        wds.map(decode_uint8),
        wds.batched(batch_size, collation_fn=_collate, partial=False),
    )
    for images, labels in pipeline:
        x = to_model_range(images)
        if random_flip:
            flip = torch.rand(x.shape[0], generator=flip_gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        yield x, labels


def iter_batches(shard_dir: Path, split: str, batch_size: int, limit: int | None = None):
    """Ordered uint8 N×H×W×C batches over ``split`` (at most ``limit`` images)."""
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(shard_urls(shard_dir, split)),
        wds.tarfile_to_samples(),
        wds.map(decode_uint8),
        wds.batched(batch_size, collation_fn=_collate, partial=True),
    )
    seen = 0
    for images, _ in pipeline:
        if limit is not None and seen + images.shape[0] > limit:
            images = images[: limit - seen]
        if images.shape[0] == 0:
            return
        seen += images.shape[0]
        yield images
        if limit is not None and seen >= limit:
            return
