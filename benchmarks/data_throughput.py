"""Data benchmarks: shard reading (decoded images/s on one core) and prepare's throughput and peak memory.

- read: 32×32 RGB shards (CIFAR-10 from ../shared/data if present, else generated images), one thread, one
  process: the ordered reader (iter_batches) and the training stream (shuffle, flip; uint8 batches), with
  either shard check (data.verify), and the cost of verifying every shard's sha256 per GB.
- prepare: LSUN-style lmdb sources of growing size (64×48 JPEGs → 32×32 shards), each prepared in a fresh
  process whose peak RSS is read back; streaming means the peak does not grow with the number of images.

Writes benchmarks/results/data.md. Usage: python benchmarks/data_throughput.py [--sizes 2000 8000 32000]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import write_results
from PIL import Image

from ddpm.config import ShardCheck, compose, validate_params
from ddpm.data import shards, sources
from ddpm.data.loader import iter_batches, train_stream
from ddpm.data.shards import shard_files
from ddpm.data.tar_reader import verify_shards

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def make_lmdb(path: Path, n: int) -> None:
    import lmdb

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    env = lmdb.open(str(path), map_size=1 << 33)
    with env.begin(write=True) as txn:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(np.roll(base, i, axis=1)).save(buf, format="JPEG", quality=90)
            txn.put(f"{i:040x}".encode(), buf.getvalue())
    env.close()


def _rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prepare_child(source: str, out: str) -> None:
    """Run in a fresh process: prepare an lmdb source; print seconds, images, peak RSS and peak anonymous RSS.

    RSS also counts the pages of the memory-mapped lmdb file that were read (file-backed, reclaimable);
    anonymous RSS (sampled every 5 ms) is the process's own heap, which streaming keeps flat.
    """
    import threading

    peak_anon, done = [_rss_anon_mib()], threading.Event()

    def sample():
        while not done.wait(0.005):
            peak_anon[0] = max(peak_anon[0], _rss_anon_mib())

    threading.Thread(target=sample, daemon=True).start()
    p = make_params(
        {"dataset": "lsun_church", "data": {"source": source, "resolution": 32, "test_size": 100, "shard_size": 5000}}
    )
    start = time.perf_counter()
    m = shards.write_dataset({s: sources.iter_split(p, s) for s in sources.SPLITS}, Path(out), 5000, {})
    seconds = time.perf_counter() - start
    images = sum(s["count"] for s in m["splits"].values())
    done.set()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "images": images, "peak_mib": peak, "peak_anon_mib": peak_anon[0]}))


def make_params(patch: dict):
    """The default params with ``patch`` merged into its sections, validated."""
    raw = compose([], ROOT / "conf")
    for key, value in patch.items():
        raw[key] = raw[key] | value if isinstance(value, dict) else value
    return validate_params(raw)


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def read_benchmark(tmp: Path) -> tuple[str, list[str]]:
    torch.set_num_threads(1)
    if SHARED_CIFAR.is_file():
        p = make_params({"dataset": "cifar10", "data": {"source": str(SHARED_CIFAR), "shard_size": 5000}})
        label = f"CIFAR-10 train split ({SHARED_CIFAR.name})"
    else:
        p = None
        label = "50,000 generated 32×32 images"
    out = tmp / "cifar"
    start = time.perf_counter()
    if p is not None:
        m = shards.write_dataset({"train": sources.iter_split(p, "train")}, out, 5000, {})
    else:
        rng = np.random.default_rng(0)
        gen = ((f"{i:06d}", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), 0) for i in range(50_000))
        m = shards.write_dataset({"train": gen}, out, 5000, {})
    prep_s = time.perf_counter() - start
    n = m["splits"]["train"]["count"]
    size_mb = sum((out / s["name"]).stat().st_size for s in m["splits"]["train"]["shards"]) / 2**20
    rows = []
    for check in ShardCheck:
        for _ in range(2):  # the first pass warms the page cache
            start = time.perf_counter()
            seen = sum(b.shape[0] for b in iter_batches(out, "train", 256, check=check))
            ordered = seen / (time.perf_counter() - start)
        rows.append(f"| ordered read (iter_batches), uint8, verify={check.value} | {ordered:,.0f} |")
    epoch_s = {}
    for check in ShardCheck:
        stream = train_stream(out, 256, seed=0, shuffle_buffer=5000, check=check)
        next(stream)
        start, seen = time.perf_counter(), 0
        while seen < n:
            seen += next(stream)[0].shape[0]
        epoch_s[check] = time.perf_counter() - start
        rows.append(
            f"| training stream (epochs, shuffle 5000, flip; uint8), verify={check.value} | "
            f"{seen / epoch_s[check]:,.0f} |"
        )
    files = shard_files(out, "train")
    size_gb = sum(f.size for f in files) / 1e9
    hash_s = min(_timed(verify_shards, files) for _ in range(3))
    rows.append("")
    rows.append(
        f"Verification (size and sha256 of every training shard, read from the page cache): "
        f"{hash_s:.3f} s for {size_gb:.3f} GB = **{hash_s / size_gb:.2f} s per GB** "
        f"({size_gb / hash_s:.2f} GB/s), {100 * hash_s / epoch_s[ShardCheck.BEFORE]:.1f}% of an epoch of the "
        f"training stream ({epoch_s[ShardCheck.BEFORE]:.2f} s, verify=before, which includes it)."
    )
    header = (
        f"{label}: {n} images in {len(m['splits']['train']['shards'])} shards, {size_mb:.1f} MiB; "
        f"prepare took {prep_s:.1f} s ({n / prep_s:,.0f} images/s)"
    )
    return header, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    ap.add_argument("--prepare-child", nargs=2, metavar=("SOURCE", "OUT"))
    args = ap.parse_args()
    if args.prepare_child:
        prepare_child(*args.prepare_child)
        return
    lines = [
        f"# Data benchmarks ({platform.processor() or platform.machine()}, {torch.get_num_threads()} cores "
        "available, reads on 1 thread)",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        header, rows = read_benchmark(tmp)
        lines += [
            "## Shard reading, 32×32 RGB, one core",
            "",
            header,
            "",
            "| reader | images/s |",
            "|---|---|",
            *rows,
            "",
        ]
        lines += [
            "## prepare on LSUN-style lmdb sources (64×48 JPEG → 32×32 PNG shards), fresh process each",
            "",
            "| images | seconds | images/s | peak RSS (MiB) | peak anonymous RSS (MiB) |",
            "|---|---|---|---|---|",
        ]
        for n in args.sizes:
            src = tmp / f"lmdb-{n}"
            make_lmdb(src, n)
            res = subprocess.run(
                [sys.executable, __file__, "--prepare-child", str(src), str(tmp / f"out-{n}")],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(res.stdout.strip().splitlines()[-1])
            lines.append(
                f"| {r['images']:,} | {r['seconds']:.1f} | {r['images'] / r['seconds']:,.0f} | "
                f"{r['peak_mib']:.0f} | {r['peak_anon_mib']:.0f} |"
            )
    write_results("data.md", lines)


if __name__ == "__main__":
    main()
