"""Sampling time of the project against diffusers' pipelines on the same network, weights and steps, in one run.

diffusers' ``UNet2DModel`` is built with the DDPM CIFAR-10 configuration (35.7M, random weights: speed does not
depend on them) and imported into the project's U-Net (``ddpm.importers``: the same weights, checked to give the
same output). Then, at batch ``--batch`` and ``--steps`` steps, in float32:

- DDIM, η = 0: ``DDIMPipeline`` against ``core.generation.generate(sampler="ddim")`` (what the sample stage runs);
- ancestral, respaced to ``--steps``: ``DDPMPipeline(num_inference_steps=...)`` against ``generate(sampler=
  "ancestral", steps=...)``.

Each side runs once untimed (warm-up, and compilation), then ``--repeats`` times; the median is reported.
``--compile`` adds ours with ``torch.compile`` (``sample.compile``). Target: ours ≤ 0.8 × their time.
diffusers is a benchmark-only extra: ``pip install -e ".[bench]"``.
Usage: python benchmarks/sample_vs_diffusers.py [--batch 16] [--steps 10] [--repeats 3] [--compile]
Writes benchmarks/results/sample_vs_diffusers-<device>.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import cpu_name, write_results
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from ddpm.config import compose, validate_params
from ddpm.core.generation import generate
from ddpm.factory import build_diffusion, inference_network, unet_config
from ddpm.importers import import_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def networks(device: torch.device):
    """diffusers' U-Net with the DDPM CIFAR-10 configuration and the project's U-Net holding the same weights."""
    torch.manual_seed(0)
    theirs = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_eps=1e-6,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        act_fn="silu",
        attention_head_dim=None,
        norm_num_groups=32,
        dropout=0.1,
    ).eval()
    params = validate_params(compose(["profile=cifar10_ddpm"], ROOT / "conf"))
    with tempfile.TemporaryDirectory() as tmp:
        theirs.save_pretrained(Path(tmp) / "unet")
        ours = import_checkpoint(Path(tmp), unet_config(params, 3)).model.eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 900])
    with torch.no_grad():
        gap = (ours(x, t) - theirs(x, t).sample).abs().max().item()
    assert gap < 1e-4, f"the imported network differs from diffusers' by {gap}"
    return theirs.to(device), ours.to(device), build_diffusion(params)


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time ours compiled (sample.compile)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    theirs, ours, diffusion = networks(device)
    b, s = args.batch, args.steps
    linear = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    ddim = DDIMPipeline(theirs, DDIMScheduler(**linear, clip_sample=False))
    ddpm = DDPMPipeline(theirs, DDPMScheduler(**linear, variance_type="fixed_small", clip_sample=True))
    for pipe in (ddim, ddpm):
        pipe.set_progress_bar_config(disable=True)

    def run_ours(net=ours, **options):
        return generate(
            diffusion, net, (3, 32, 32), seed=0, start=0, count=b, batch_size=b, device=device, steps=s, **options
        )

    compiled = inference_network(ours, device, "fp32", compile=True) if args.compile else None
    variants = [("ours", ours)] + ([("ours, compiled", compiled)] if args.compile else [])

    rows = []
    with torch.no_grad():
        jobs = [
            (
                "DDIM η = 0",
                lambda: ddim(batch_size=b, num_inference_steps=s, eta=0.0, output_type="np"),
                {"sampler": "ddim", "eta": 0.0},
            ),
            (
                "ancestral (DDPM), respaced",
                lambda: ddpm(batch_size=b, num_inference_steps=s, output_type="np"),
                {"sampler": "ancestral"},
            ),
        ]
        for job, their_fn, options in jobs:
            their_s = median_seconds(their_fn, args.repeats)
            for label, net in variants:
                our_s = median_seconds(lambda n=net, o=options: run_ours(n, **o), args.repeats)
                rows.append(
                    f"| {job} | {s} | {b} | {their_s:.2f} | {label} | {our_s:.2f} | **{our_s / their_s:.2f} ×** |"
                )
    lines = [
        "# Sampling: the project against diffusers' pipelines (DDPM CIFAR-10 U-Net, 35.7M, float32)",
        "",
        f"Device: {name}; torch {torch.__version__}. Command: `python benchmarks/sample_vs_diffusers.py --batch "
        f"{b} --steps {s} --repeats {args.repeats}{' --compile' if args.compile else ''}`. "
        "Same weights (imported, checked), median of "
        f"{args.repeats} runs after a warm-up. Target: ours ≤ 0.8 × diffusers.",
        "",
        "| sampler | steps | batch | diffusers (s) | ours | ours (s) | ours / diffusers |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_results(f"sample_vs_diffusers-{device.type}.md", lines)


if __name__ == "__main__":
    main()
