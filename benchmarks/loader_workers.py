"""The training stream's decoded images/s with 0, 1 and 2 DataLoader workers (``train.loader_workers``).

32×32 RGB shards (the CIFAR-10 train split from ../shared/data if present, else generated images) in shards of
5,000, read from the page cache; batches of 128 (one process's share of CIFAR-10's batch), shuffle 5000, flips,
uint8, verify=before: one epoch after the first batch, best of two. The main process runs on one thread, as a
training process's host side does; each worker decodes on one thread. With 0 workers the main process decodes.

Writes benchmarks/results/loader_workers.md. Usage: python benchmarks/loader_workers.py [--images 50000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from _common import cpu_name, write_results
from remote_shards import write_shards

from ddpm.config import ShardCheck
from ddpm.data.loader import train_stream


def epoch_rate(folder: Path, images: int, workers: int) -> float:
    stream = train_stream(folder, 128, seed=0, shuffle_buffer=5000, check=ShardCheck.BEFORE, workers=workers)
    next(stream)
    start, seen = time.perf_counter(), 0
    while seen < images:
        seen += next(stream)[0].shape[0]
    rate = seen / (time.perf_counter() - start)
    stream.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shards"
        label = write_shards(folder, args.images)
        rates = {w: max(epoch_rate(folder, args.images, w) for _ in range(2)) for w in args.workers}
    base = rates[args.workers[0]]
    lines = [
        f"# Training data loader: DataLoader workers ({cpu_name()}; {os.cpu_count()} cores)",
        "",
        f"{label} in shards of 5,000 from the page cache; the training stream (batches of 128, shuffle 5000, flip; "
        "uint8; verify=before) for one epoch after its first batch, best of two. Workers decode on one thread each; "
        "the batches are the same for any number of workers.",
        "",
        "| workers | images/s | vs 0 workers |",
        "|---|---|---|",
        *(f"| {w} | {r:,.0f} | {r / base:.2f}× |" for w, r in rates.items()),
    ]
    write_results("loader_workers.md", lines)


if __name__ == "__main__":
    main()
