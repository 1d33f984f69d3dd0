"""Work split over processes: fixed chunks taken round-robin and gathered back in index order, so a result does
not depend on how many processes computed it (each chunk is the same batch whatever the process count)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from ddpm import peers

T = TypeVar("T")


@dataclass(frozen=True)
class WorkShare:
    """This process's place in the group: chunk i belongs to rank i mod world."""

    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise ValueError(f"share: rank {self.rank} is outside a group of {self.world}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, index: int) -> bool:
        return index % self.world == self.rank

    def mine(self, chunks: Iterable[T]) -> Iterator[tuple[int, T]]:
        """(index, chunk) of this rank's chunks; the others' are iterated over and dropped."""
        for i, chunk in enumerate(chunks):
            if self.owns(i):
                yield i, chunk

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def wait_for_all(self) -> None:
        """A barrier for the end of unevenly long work (a rank may finish its share of hours of 256² sampling long
        before the slowest one): through the rendezvous store, as long as the peers are heard from
        (``peers.wait_for_all``), rather than a collective that NCCL's watchdog would end."""
        if self.world > 1:
            peers.wait_for_all()

    def gather(self, results: dict[int, T], everywhere: bool = True) -> list[T]:
        """Every rank's {chunk index: result}, merged and in index order: on every rank, or (``everywhere``
        False) on the main one only, the others getting [] (features of a whole dataset held once, not per rank)."""
        parts: list[dict[int, T]] = [results]
        if self.world > 1:
            self.wait_for_all()  # ranks finish their chunks up to a chunk apart
            if everywhere:
                parts = [{}] * self.world  # filled by all_gather_object
                dist.all_gather_object(parts, results)
            else:
                parts = [{}] * self.world if self.is_main else []
                dist.gather_object(results, parts if self.is_main else None, dst=0)
                if not self.is_main:
                    return []
        merged = {i: r for part in parts for i, r in part.items()}
        if sorted(merged) != list(range(len(merged))):
            raise RuntimeError(f"share: gathered chunks {sorted(merged)} are not 0..{len(merged) - 1}")
        return [merged[i] for i in range(len(merged))]


ONE_PROCESS = WorkShare()


@dataclass(frozen=True)
class Elsewhere:
    """Stands in a sequence of batches for one that another rank works on (``WorkShare.owns``): only its size is
    known here, for progress, so this rank neither decodes nor copies it."""

    size: int

    def __len__(self) -> int:
        return self.size


@contextmanager
def every_host_core(device: torch.device) -> Iterator[None]:
    """torch's CPU threads raised to every core this process may run on, for the block (``accelerate launch``
    starts each process with one); nothing changes for work on an accelerator."""
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cpu":
        torch.set_num_threads(max(before, cores))
    try:
        yield
    finally:
        torch.set_num_threads(before)
