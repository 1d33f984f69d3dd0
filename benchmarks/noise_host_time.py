"""Host time per sampling step spent drawing the per-image noise (``core.generation.per_image_noise``): drawn when
asked (the CPU default) versus drawn ahead on a helper thread while the network runs (the CUDA default; here with
a stand-in network step that releases the host for ``--step-ms``, as a GPU kernel queue does); and the time one
batch of 256² noise takes to draw ahead on 1 and more host threads (rows side by side).

Usage: PYTHONPATH=src python benchmarks/noise_host_time.py [--batch 500] [--resolution 32] [--step-ms 20]
Writes benchmarks/results/noise_host_time-cpu.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import cpu_name, write_results

from ddpm.core.generation import per_image_noise


def blocked_ms(ahead: bool, batch: int, resolution: int, step_ms: float, steps: int) -> float:
    """Median ms per step that the host waits for noise (wall time per step minus the stand-in step)."""
    draw = per_image_noise(0, range(batch), (3, resolution, resolution), "cpu", ahead=ahead)
    draw()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        draw()
        time.sleep(step_ms / 1000)  # the accelerator's work for one step: the host is free meanwhile
        times.append((time.perf_counter() - start) * 1000 - step_ms)
    return statistics.median(times)


def draw_ms(threads: int, batch: int = 64, resolution: int = 256, draws: int = 10) -> float:
    """Mean ms per batch drawn ahead back to back (no step to hide behind): the drawing's own wall time."""
    draw = per_image_noise(0, range(batch), (3, resolution, resolution), "cpu", ahead=True, threads=threads)
    draw()
    start = time.perf_counter()
    for _ in range(draws):
        draw()
    return (time.perf_counter() - start) * 1000 / draws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--step-ms", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    rows = [
        f"# Noise drawing: host time per sampling step (batch {args.batch}, {args.resolution}², stand-in step "
        f"{args.step_ms:.0f} ms)",
        "",
        f"{cpu_name()}. Command: `python benchmarks/noise_host_time.py --batch {args.batch} --resolution "
        f"{args.resolution} --step-ms {args.step_ms:.0f}`",
        "",
        "| noise | host ms per step waiting for noise (median) |",
        "|---|---|",
    ]
    for ahead, label in ((False, "drawn when asked (before)"), (True, "drawn ahead on a helper thread (after)")):
        rows.append(f"| {label} | {blocked_ms(ahead, args.batch, args.resolution, args.step_ms, args.steps):.2f} |")
    rows += ["", "| 64 images of 3×256×256, drawn ahead on | ms per batch (back to back) |", "|---|---|"]
    for threads in sorted({1, 2, os.cpu_count() or 1}):
        rows.append(f"| {threads} host thread{'s' if threads > 1 else ''} | {draw_ms(threads):.1f} |")
    write_results("noise_host_time-cpu.md", rows)


if __name__ == "__main__":
    main()
