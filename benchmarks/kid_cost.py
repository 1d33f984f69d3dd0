"""KID and precision/recall from Inception features: torch-fidelity's KID (numpy, on the threads its BLAS was
loaded with) against ``evaluation.kid`` on one thread (what each ``accelerate launch`` process gets) and on every
core (what evaluate gives it), precision/recall alike. Random 2048-d features stand in for real ones (the cost
does not depend on the values).

Usage: PYTHONPATH=src python benchmarks/kid_cost.py [--samples 5000] [--subset 1000]
Writes benchmarks/results/kid_cost-cpu.md.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _common import cpu_name, write_results
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from ddpm.evaluation.fidelity import kid_precision_recall
from ddpm.evaluation.kid import kernel_inception_distance


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--subset", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(args.samples, 2048)), rng.normal(size=(args.samples, 2048))
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(1)
    x, y = torch.from_numpy(a), torch.from_numpy(b)
    before = seconds(lambda: kid_features_to_metric(x, y, kid_subset_size=args.subset, verbose=False))
    prc = seconds(lambda: prc_features_to_metric(x.float(), y.float(), save_cpu_ram=True, verbose=False))
    kid = seconds(lambda: kernel_inception_distance(x, y, args.subset))
    every = seconds(lambda: kid_precision_recall(a, b, args.subset, 0, "cpu"))  # raises the threads to every core
    rows = [
        f"# KID and precision/recall: {args.samples:,} sample features against {args.samples:,} reference features "
        f"(subsets of {args.subset})",
        "",
        f"{cpu_name().rsplit(',', 1)[0]}, {cores} cores. Command: `python benchmarks/kid_cost.py --samples "
        f"{args.samples} --subset {args.subset}`",
        "",
        "| what | seconds |",
        "|---|---|",
        f"| KID, torch-fidelity's (numpy), in a process with one torch thread | {before:.1f} |",
        f"| KID, ours, one thread | {kid:.1f} |",
        f"| precision/recall (torch-fidelity's), one thread | {prc:.1f} |",
        f"| KID + precision/recall on every core (what evaluate does) | {every:.1f} |",
    ]
    write_results("kid_cost-cpu.md", rows)


if __name__ == "__main__":
    main()
