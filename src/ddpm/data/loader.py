"""WebDataset readers: an infinite resampled training stream per rank and ordered passes over a split.

Images travel as uint8 N×C×H×W tensors until ``core.images.to_model_range`` turns them into floats in [-1, 1].
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import webdataset as wds

from ddpm.config import ShardCheck
from ddpm.progress import Counted

from .png import decode_png
from .shards import REPAIR, ShardFile, shard_files
from .tar_reader import check_size, read_members, verify_shards


def tar_samples(shards: list[ShardFile], check: ShardCheck):
    """A WebDataset stage over ``shards``: shard dicts (``url``) → sample dicts grouping members by key
    (``__key__``, ``__shard__``, ``png``, …), each shard checked against the manifest as ``check`` says.

    A lean reader for the USTAR shards that ``prepare`` writes; about twice as fast as tarfile-based reading.
    """
    by_url = {shard.where: shard for shard in shards}

    def samples(source):
        for item in source:
            shard, sample = by_url[item["url"]], None
            for name, data in read_members(shard, check):
                key, _, ext = name.partition(".")
                if sample is None or sample["__key__"] != key:
                    if sample is not None:
                        yield sample
                    sample = {"__key__": key, "__shard__": shard}
                sample[ext] = data
            if sample is not None:
                yield sample

    return samples


def decode_sample(sample: dict) -> tuple[torch.Tensor, int, str]:
    """A shard sample → (C×H×W uint8 image, label, key); a defect raises ValueError naming the shard and key."""
    shard, key = sample["__shard__"], sample["__key__"]
    try:
        if not {"png", "cls"} <= sample.keys():
            raise ValueError(f"has members {sorted(k for k in sample if not k.startswith('__'))}, not png and cls")
        label = sample["cls"].decode("ascii", "replace")
        if not label.isdigit():
            raise ValueError(f"class label {label!r} is not a number")
        return decode_png(sample["png"], shard.shape), int(label), key
    except ValueError as err:
        raise ValueError(f"shard {shard.where}, image {key!r}: {err}; {REPAIR}") from None


def _collate(batch):
    return (
        torch.stack([img for img, _, _ in batch]),
        torch.tensor([label for _, label, _ in batch]),
        [key for _, _, key in batch],
    )


def train_stream(
    shard_dir: Path,
    batch_size: int,
    seed: int,
    random_flip: bool = True,
    shuffle_buffer: int = 5000,
    check: ShardCheck = ShardCheck.BEFORE,
    url: str | None = None,
):
    """Infinite batches ``(images, labels, keys)``, resampled from all training shards: images uint8 N×C×H×W,
    flipped left–right at random (``random_flip``); ``core.images.to_model_range`` makes them the network's input,
    on the device (a quarter of float32's bytes to copy).

    Every rank draws shards uniformly from the whole training split with its own ``seed`` (a rank's share of the
    data is a random one, as one process's is: any number of shards serves any number of processes, and no shard
    is drawn more often than another), so the loader must not also go through ``accelerator.prepare``; the
    stream never ends, so every rank yields as many batches as it is asked for.
    Every training shard's size is checked now (on every rank, so that all stop together), and each shard's
    sha256 each time it is opened (``check``). With ``url`` (``data.shards_url``) the manifest and the shards are
    read from there.
    """
    every = shard_files(shard_dir, "train", url)
    for shard in every:  # all ranks see a truncated or missing shard at once
        check_size(shard)
    shards = every
    rng = random.Random(seed)
    flip_gen = torch.Generator().manual_seed(seed)
    pipeline = wds.DataPipeline(
        wds.ResampledShards([s.where for s in shards], seed=seed, worker_seed=lambda: 0, deterministic=True),
        tar_samples(shards, check),
        wds.shuffle(shuffle_buffer, initial=min(shuffle_buffer, 1000), rng=rng),
        wds.map(decode_sample),
        wds.batched(batch_size, collation_fn=_collate, partial=False),
    )
    for images, labels, keys in pipeline:
        if random_flip:
            flip = torch.rand(images.shape[0], generator=flip_gen) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        yield images, labels, keys


def iter_batches(
    shard_dir: Path, split: str, batch_size: int, limit: int | None = None, check: ShardCheck = ShardCheck.BEFORE
):
    """Ordered uint8 N×C×H×W batches over ``split`` (at most ``limit`` images).

    Every shard the pass will read is verified (size and sha256) when this is called, so a corrupt one stops the
    caller before any work; each is checked again as it is read (``check``).
    """
    shards, covered = [], 0
    for shard in shard_files(shard_dir, split):
        if limit is not None and covered >= limit:
            break
        shards.append(shard)
        covered += shard.count
    verify_shards(shards)
    return Counted(_ordered(shards, batch_size, limit, check), covered if limit is None else min(limit, covered))


def _ordered(shards: list[ShardFile], batch_size: int, limit: int | None, check: ShardCheck):
    pipeline = wds.DataPipeline(
        wds.SimpleShardList([s.where for s in shards]),
        tar_samples(shards, check),
        wds.map(decode_sample),
        wds.batched(batch_size, collation_fn=_collate, partial=True),
    )
    seen = 0
    for images, _, _ in pipeline:
        if limit is not None:
            images = images[: limit - seen]
        if images.shape[0] == 0:
            return
        seen += images.shape[0]
        yield images
        if limit is not None and seen >= limit:
            return


def first_batch(shard_dir: Path, split: str, size: int, check: ShardCheck = ShardCheck.BEFORE) -> torch.Tensor:
    """The first ``size`` images of ``split`` (fewer if the split is smaller), uint8 N×C×H×W."""
    return next(iter(iter_batches(shard_dir, split, size, check=check)))
