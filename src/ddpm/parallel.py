"""Work split over processes: fixed chunks taken round-robin and gathered back in index order, so a result does
not depend on how many processes computed it (each chunk is the same batch whatever the process count)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch.distributed as dist

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

    def gather(self, results: dict[int, T]) -> list[T]:
        """Every rank's {chunk index: result}, merged and in index order, on every rank."""
        parts: list[dict[int, T]] = [results]
        if self.world > 1:
            parts = [{}] * self.world  # filled by all_gather_object
            dist.all_gather_object(parts, results)
        merged = {i: r for part in parts for i, r in part.items()}
        if sorted(merged) != list(range(len(merged))):
            raise RuntimeError(f"share: gathered chunks {sorted(merged)} are not 0..{len(merged) - 1}")
        return [merged[i] for i in range(len(merged))]


ONE_PROCESS = WorkShare()
