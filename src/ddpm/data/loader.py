"""WebDataset readers: an infinite training stream per rank, in epochs, and ordered passes over a split.

Images travel as uint8 N×C×H×W tensors until ``core.images.to_model_range`` turns them into floats in [-1, 1].
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np
import torch

from ddpm.config import ShardCheck
from ddpm.parallel import ONE_PROCESS, Elsewhere, WorkShare
from ddpm.progress import Counted

from .png import decode_png
from .shard_cache import cached, cached_already
from .shards import REPAIR, ShardFile, shard_files
from .shared_memory import PREFETCH, WORKER_TIMEOUT
from .tar_reader import check_size, read_members, verify_shards


def shard_samples(shard: ShardFile, check: ShardCheck) -> Iterator[dict]:
    """The sample dicts of one shard, grouping its members by key (``__key__``, ``__shard__``, ``png``, …), the
    shard checked against the manifest as ``check`` says."""
    sample = None
    for name, data in read_members(shard, check):
        key, _, ext = name.partition(".")
        if sample is None or sample["__key__"] != key:
            if sample is not None:
                yield sample
            sample = {"__key__": key, "__shard__": shard}
        sample[ext] = data
    if sample is not None:
        yield sample


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
    workers: int = 0,
    pin_memory: bool = False,
    cache: Path | None = None,
) -> Generator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """Infinite batches ``(images, labels, keys)`` of one rank, as ``TrainOrder`` defines them: images uint8
    N×C×H×W (``core.images.to_model_range`` makes them the network's input, on the device: a quarter of
    float32's bytes to copy), flipped left–right at random (``random_flip``).

    ``workers`` DataLoader processes decode them (0: this process), each the batches ``w, w + workers, …``; the
    batches are the same for any number of workers. ``pin_memory`` puts them in page-locked memory (for a
    non-blocking copy to a GPU). Every training shard's size is checked now (on every rank, so that all stop
    together), and each shard's sha256 each time it is read (``check``); a defect stops the caller with the same
    one-line ValueError from a worker as from this process. With ``url`` (``data.shards_url``) the manifest and
    the shards are read from there, each fetched once into the node's ``cache`` folder (``shard_cache``) and read
    from that file, or streamed from the URL at every read without a cache. The stream never ends, so every rank
    yields as many batches as it is asked for, and the loader must not also go through ``accelerator.prepare``.
    """
    shards = shard_files(shard_dir, "train", url)
    for shard in shards:  # all ranks see a truncated or missing shard at once
        if not (cache and cached_already(shard, cache)):
            check_size(shard)
    order = TrainOrder(shards, batch_size, seed, random_flip, shuffle_buffer, check, cache)
    loader = torch.utils.data.DataLoader(
        order,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH if workers else None,
        timeout=WORKER_TIMEOUT if workers else 0,
        worker_init_fn=_leave_interrupts_to_the_main_process if workers else None,
    )
    for item in loader:
        if isinstance(item, _Raised):
            raise item.error
        yield item


def _leave_interrupts_to_the_main_process(worker: int) -> None:
    """A worker ignores Ctrl-C (sent to the whole terminal's process group): the training process stops after its
    step, which may still need the batches the workers make."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Raised:
    """An exception of a DataLoader worker, carried to the caller as it was raised (the DataLoader would turn it
    into a multi-line report of the worker's traceback)."""

    def __init__(self, error: Exception):
        self.error = error


class TrainOrder(torch.utils.data.IterableDataset):
    """One rank's training batches, defined independently of how many processes decode them.

    The stream goes through the training split in epochs: epoch ``e`` takes the shards in a random order (seeded
    by ``seed`` and ``e``), in groups of consecutive shards holding at least ``shuffle_buffer`` images; each
    group's images are shuffled together (seeded by ``seed``, ``e`` and the group) and the epochs' images, one
    after the other, are cut into batches of ``batch_size``. So every image is seen once per epoch by each rank,
    and every rank goes through all shards with its own seed (any number of shards serves any number of ranks).
    Batch ``j``'s flips are seeded by ``seed`` and ``j``. A DataLoader worker ``w`` of ``W`` yields batches
    ``w, w + W, …`` (it reads every group that holds some of them, decoding only their images), which the
    DataLoader takes from its workers in turn: batch 0, 1, 2, … as one process would yield them.
    """

    def __init__(
        self,
        shards: list[ShardFile],
        batch_size: int,
        seed: int,
        random_flip: bool,
        shuffle_buffer: int,
        check: ShardCheck,
        cache: Path | None = None,
    ):
        super().__init__()
        self.shards, self.batch_size, self.seed = shards, batch_size, seed
        self.random_flip, self.shuffle_buffer, self.check, self.cache = random_flip, shuffle_buffer, check, cache

    def local(self, shard: ShardFile) -> ShardFile:
        """Where this reader gets ``shard``'s bytes: the node's cached copy of a served shard, if it keeps one."""
        return cached(shard, self.cache) if self.cache is not None else shard

    def __iter__(self) -> Iterator:
        info = torch.utils.data.get_worker_info()
        if info is None:
            yield from self.batches(0, 1)
            return
        try:
            yield from self.batches(info.id, info.num_workers)
        except Exception as err:  # noqa: BLE001 - every error reaches the caller, as raised
            yield _Raised(err)

    def groups(self, epoch: int) -> list[list[ShardFile]]:
        """Epoch ``epoch``'s shards in its order, grouped (each group's images are shuffled together)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        groups, group, count = [], [], 0
        for i in order:
            group.append(self.shards[i])
            count += self.shards[i].count
            if count >= self.shuffle_buffer:
                groups.append(group)
                group, count = [], 0
        return groups + ([group] if group else [])

    def batches(self, worker: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        size, start, batch = self.batch_size, 0, []  # start: the stream position of the group's first image
        for epoch in itertools.count():
            for g, group in enumerate(self.groups(epoch)):
                count = sum(shard.count for shard in group)
                mine = [j for j in range(start // size, (start + count - 1) // size + 1) if j % workers == worker]
                if mine:
                    samples = [sample for shard in group for sample in shard_samples(self.local(shard), self.check)]
                    if len(samples) != count:
                        which = (
                            f"shard {group[0].where} holds"
                            if len(group) == 1
                            else "shards {} hold".format(", ".join(shard.where for shard in group))
                        )
                        raise ValueError(f"{which} {len(samples)} images, the manifest says {count}; {REPAIR}")
                    perm = np.random.default_rng([self.seed, epoch, g]).permutation(count)
                    for j in mine:
                        end = min((j + 1) * size, start + count)
                        batch += [decode_sample(samples[perm[p - start]]) for p in range(max(j * size, start), end)]
                        if end == (j + 1) * size:
                            yield self.finish(batch, j)
                            batch = []
                start += count

    def finish(self, batch: list, j: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        images, labels, keys = _collate(batch)
        if self.random_flip:
            flip_seed = int(np.random.SeedSequence([self.seed, j]).generate_state(1)[0])
            flip = torch.rand(images.shape[0], generator=torch.Generator().manual_seed(flip_seed)) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        return images, labels, keys


def iter_batches(
    shard_dir: Path,
    split: str,
    batch_size: int,
    limit: int | None = None,
    check: ShardCheck = ShardCheck.BEFORE,
    share: WorkShare = ONE_PROCESS,
) -> Counted:
    """Ordered uint8 N×C×H×W batches over ``split`` (at most ``limit`` images). Batch i is decoded only where
    ``share`` owns it; elsewhere it is an ``Elsewhere`` of its size (the rank that owns it decodes it).

    Every shard the pass will read is verified (size and sha256) when this is called, so a corrupt one stops the
    caller before any work: each by one process of ``share`` (shard i by the owner of chunk i), which tells the
    others; each is checked again as it is read (``check``).
    """
    shards, covered = [], 0
    for shard in shard_files(shard_dir, split):
        if limit is not None and covered >= limit:
            break
        shards.append(shard)
        covered += shard.count
    checking = share if torch.distributed.is_initialized() else ONE_PROCESS  # a share of a live group
    defects = [d for d in checking.gather({i: _defect(shard) for i, shard in checking.mine(shards)}) if d]
    if defects:
        raise ValueError(defects[0])
    return Counted(_ordered(shards, batch_size, limit, check, share), covered if limit is None else min(limit, covered))


def _defect(shard: ShardFile) -> str | None:
    """What is wrong with ``shard`` (its size or sha256 against the manifest), or None."""
    try:
        verify_shards([shard])
    except ValueError as err:
        return str(err)
    return None


def _ordered(shards: list[ShardFile], batch_size: int, limit: int | None, check: ShardCheck, share: WorkShare):
    raw: list[dict] = []
    index = seen = 0
    for shard in shards:
        for sample in shard_samples(shard, check):
            raw.append(sample)
            if len(raw) == batch_size or (limit is not None and seen + len(raw) >= limit):
                yield _decoded(raw) if share.owns(index) else Elsewhere(len(raw))
                index, seen, raw = index + 1, seen + len(raw), []
                if limit is not None and seen >= limit:
                    return
    if raw:
        yield _decoded(raw) if share.owns(index) else Elsewhere(len(raw))


def _decoded(samples: list[dict]) -> torch.Tensor:
    return torch.stack([decode_sample(sample)[0] for sample in samples])


def first_batch(shard_dir: Path, split: str, size: int, check: ShardCheck = ShardCheck.BEFORE) -> torch.Tensor:
    """The first ``size`` images of ``split`` (fewer if the split is smaller), uint8 N×C×H×W."""
    return next(iter(iter_batches(shard_dir, split, size, check=check)))
