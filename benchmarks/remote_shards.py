"""Shards read from a URL (``data.shards_url``) against the same shards read from disk: the training stream's
decoded images/s on one core, for both shard checks (data.verify), from loopback HTTP and from a loopback S3
endpoint, streamed (``DDPM_SHARD_CACHE=off``) and through the node's shard cache.

The shards (32×32 RGB: the CIFAR-10 train split from ../shared/data if present, else generated images) are served
on 127.0.0.1 by servers in their own processes, the stand-ins for a web server and an object store: Python's
http.server, and moto's S3 server (in memory; read through fsspec's s3fs). The reader is one process on one
thread, as one training process's loader is. The cached column is a second epoch from the node cache (the first
fetched each shard once). Target: every remote read ≥ 0.8× local.

Writes benchmarks/results/remote_shards.md. Usage: python benchmarks/remote_shards.py [--images 50000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from _common import cpu_name, write_results
from data_throughput import SHARED_CIFAR, make_params

from ddpm.config import ShardCheck
from ddpm.data import shards, sources
from ddpm.data.loader import train_stream

S3_ENV = {  # made-up credentials: the loopback server accepts any
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


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


@contextmanager
def server(cmd: list[str], port: int):
    """``cmd`` in its own process until it accepts connections on ``port``; stopped after the block."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait()


def s3_upload(folder: Path, endpoint: str) -> str:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in S3_ENV.items() if "KEY" in k})
    client.create_bucket(Bucket="bench")
    for path in sorted(folder.iterdir()):
        client.upload_file(str(path), "bench", f"shards/{path.name}")
    return "s3://bench/shards"


def epoch_rate(folder: Path, images: int, check: ShardCheck, url: str | None, cache: Path | None = None) -> float:
    """Images/s of the training stream over one epoch's worth of images (after a first batch)."""
    stream = train_stream(folder, 256, seed=0, shuffle_buffer=5000, check=check, url=url, cache=cache)
    try:
        next(stream)
        start, seen = time.perf_counter(), 0
        while seen < images:
            seen += next(stream)[0].shape[0]
        return seen / (time.perf_counter() - start)
    finally:
        stream.close()


def cached_rate(tmp: Path, images: int, check: ShardCheck, url: str) -> float:
    """A second epoch's images/s through a fresh node cache (the first epoch filled it)."""
    cache = tmp / "node-cache"
    shutil.rmtree(cache, ignore_errors=True)
    epoch_rate(tmp / "elsewhere", images, check, url, cache)
    return epoch_rate(tmp / "elsewhere", images, check, url, cache)


def row(name: str, check: ShardCheck, local: float, rate: float) -> str:
    verdict = "(meets ≥ 0.8×)" if rate >= 0.8 * local else "(below 0.8×)"
    return f"| {name} | {check.value} | {rate:,.0f} | {rate / local:.2f}× {verdict} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=50_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.update(S3_ENV)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "shards"
        label = write_shards(folder, args.images)
        http_port, s3_port = free_port(), free_port()
        http = [sys.executable, "-m", "http.server", str(http_port), "--bind", "127.0.0.1", "--directory", str(folder)]
        moto = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(s3_port)]
        with server(http, http_port), server(moto, s3_port):
            os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{s3_port}"
            urls = {"HTTP": f"http://127.0.0.1:{http_port}", "S3": s3_upload(folder, os.environ["AWS_ENDPOINT_URL"])}
            rows = []
            for check in ShardCheck:
                local = max(epoch_rate(folder, args.images, check, None) for _ in range(2))
                rows.append(f"| local files | {check.value} | {local:,.0f} | 1.00× |")
                for name, url in urls.items():
                    streamed = max(epoch_rate(tmp / "elsewhere", args.images, check, url) for _ in range(2))
                    rows.append(row(f"{name}, streamed", check, local, streamed))
                    rows.append(row(f"{name}, node cache", check, local, cached_rate(tmp, args.images, check, url)))
    lines = [
        f"# Shards from HTTP and S3 vs local files ({cpu_name()})",
        "",
        f"{label} in shards of 5,000; the training stream (epochs, shuffle 5000, flip; uint8) for one epoch, "
        "best of two (the node cache: its second epoch); the servers are `python -m http.server` and moto's S3 "
        "server (`moto_server`, read through s3fs), each in its own process on 127.0.0.1; local files are read from "
        "the page cache.",
        "",
        "| source | data.verify | img/s | vs local |",
        "|---|---|---|---|",
        *rows,
    ]
    write_results("remote_shards.md", lines)


if __name__ == "__main__":
    main()
