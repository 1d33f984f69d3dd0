"""Shards streamed over HTTP (``data.shards_url``) against the same shards read from disk: the training stream's
decoded images/s on one core, for both shard checks (data.verify).

The shards (32×32 RGB: the CIFAR-10 train split from ../shared/data if present, else generated images) are served
by Python's http.server in a separate process on 127.0.0.1, the stand-in for a web server or object store; the
reader is one process on one thread, as one training process's loader is. Target: HTTP ≥ 0.8× local.

Writes benchmarks/results/http_shards.md. Usage: python benchmarks/http_shards.py [--images 50000]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import cpu_name, write_results
from data_throughput import SHARED_CIFAR, make_params

from ddpm.config import ShardCheck
from ddpm.data import shards, sources
from ddpm.data.loader import train_stream


def write_shards(out: Path, images: int) -> str:
    if SHARED_CIFAR.is_file():
        p = make_params({"dataset": "cifar10", "data": {"source": str(SHARED_CIFAR), "limit": images}})
        shards.write_dataset({"train": sources.iter_split(p, "train")}, out, 5000, {})
        return f"CIFAR-10 train split ({SHARED_CIFAR.name}), first {images:,} images"
    rng = np.random.default_rng(0)
    gen = ((f"{i:06d}", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), 0) for i in range(images))
    shards.write_dataset({"train": gen}, out, 5000, {})
    return f"{images:,} generated 32×32 images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def epoch_rate(folder: Path, images: int, check: ShardCheck, url: str | None) -> float:
    """Images/s of the training stream over one epoch's worth of images (after a first batch)."""
    stream = train_stream(folder, 256, seed=0, shuffle_buffer=5000, check=check, url=url)
    next(stream)
    start, seen = time.perf_counter(), 0
    while seen < images:
        seen += next(stream)[0].shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=50_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shards"
        label = write_shards(folder, args.images)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            url = f"http://127.0.0.1:{port}"
            rows = []
            for check in ShardCheck:
                local = max(epoch_rate(folder, args.images, check, None) for _ in range(2))
                served = max(epoch_rate(Path(tmp) / "elsewhere", args.images, check, url) for _ in range(2))
                rows.append(
                    f"| {check.value} | {local:,.0f} | {served:,.0f} | {served / local:.2f}× "
                    f"{'(meets ≥ 0.8×)' if served >= 0.8 * local else '(below 0.8×)'} |"
                )
        finally:
            server.terminate()
            server.wait()
    lines = [
        f"# Shards over HTTP vs local files ({cpu_name()})",
        "",
        f"{label} in shards of 5,000; the training stream (epochs, shuffle 5000, flip; uint8) for one epoch, "
        "best of two; the server is `python -m http.server` in its own process on 127.0.0.1; local files are read "
        "from the page cache.",
        "",
        "| data.verify | local (img/s) | HTTP (img/s) | HTTP / local |",
        "|---|---|---|---|",
        *rows,
    ]
    write_results("http_shards.md", lines)


if __name__ == "__main__":
    main()
