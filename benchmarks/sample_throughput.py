"""Sampling and evaluation speed of the DDPM CIFAR-10 model (35.7M; untrained weights: speed does not depend on
them): DDPM ancestral sampling (1000 steps), DDIM-100, the full-T NLL bound, and Inception features for FID.

Each figure times ``--steps`` network evaluations at batch ``--batch`` after one warm-up and extrapolates to
the full job (a sampler's cost is its step count × the per-step time), so the CPU can estimate jobs it could
not finish: 50k DDIM-100 samples, 50k DDPM-1000 samples, NLL over the 10k test images, FID features of 50k.
``--bf16`` runs the network under bf16 autocast with channels_last.

Usage: python benchmarks/sample_throughput.py [--batch 64] [--steps 3] [--bf16]
Writes benchmarks/results/sample_throughput-<device>[-bf16].md.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch
from _common import write_results

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet, UNetConfig
from ddpm.evaluation.fid import feature_extractor


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_call(fn, steps: int, device) -> float:
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="timed network evaluations per figure")
    ap.add_argument("--bf16", action="store_true")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    fmt = torch.channels_last if args.bf16 else torch.contiguous_format
    model = UNet(UNetConfig()).to(device, memory_format=fmt).eval()
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 1000))
    x = torch.randn(args.batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    t = torch.full((args.batch,), 500, device=device, dtype=torch.long)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    @torch.no_grad()
    def sample_step():  # one ancestral (DDIM costs the same: one network call and elementwise work)
        with autocast():
            diffusion.p_sample(model, x, t)

    @torch.no_grad()
    def nll_step():  # one term of the bound: q_sample, the network, the KL
        with autocast():
            diffusion.vb_terms_bpd(model, x, diffusion.q_sample(x, t), t)

    extractor = feature_extractor(str(device))
    images = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, device=device)

    @torch.no_grad()
    def fid_batch():
        extractor(images)

    step_s = per_call(sample_step, args.steps, device)
    nll_s = per_call(nll_step, args.steps, device)
    fid_s = per_call(fid_batch, max(1, args.steps // 2), device)
    per_image = {
        "ddim100": 100 * step_s / args.batch,
        "ddpm1000": 1000 * step_s / args.batch,
        "nll": 1000 * nll_s / args.batch,
        "fid": fid_s / args.batch,
    }
    jobs = [
        ("50k samples, DDIM-100", 50_000 * per_image["ddim100"], 1 / per_image["ddim100"]),
        ("50k samples, DDPM-1000", 50_000 * per_image["ddpm1000"], 1 / per_image["ddpm1000"]),
        ("NLL, full T=1000, 10k test images", 10_000 * per_image["nll"], 1 / per_image["nll"]),
        ("FID features of 50k images", 50_000 * per_image["fid"], 1 / per_image["fid"]),
    ]
    suffix = "-bf16" if args.bf16 else ""
    lines = [
        f"# Sampling and evaluation speed, DDPM CIFAR-10 U-Net (35.7M), batch {args.batch}"
        + (", bf16 + channels_last" if args.bf16 else ""),
        "",
        f"Device: {name}; torch {torch.__version__}. Command: `python benchmarks/sample_throughput.py --batch "
        f"{args.batch} --steps {args.steps}{' --bf16' if args.bf16 else ''}`",
        f"Per network call: sampling step {step_s:.3f} s, NLL term {nll_s:.3f} s; Inception batch {fid_s:.3f} s.",
        "",
        "| job | images/s | estimated time |",
        "|---|---|---|",
    ]
    for job, seconds, rate in jobs:
        lines.append(f"| {job} | {rate:.2f} | {seconds / 60:.1f} min |")
    write_results(f"sample_throughput-{device.type}{suffix}.md", lines)


if __name__ == "__main__":
    main()
