"""Training throughput: our DDPM CIFAR-10 step against the same configuration built from diffusers.

Both sides train the 35.7M-parameter DDPM CIFAR-10 U-Net (ch 128, ch_mult (1,2,2,2), attention at 16×16,
dropout 0.1) on 32×32 batches with L_simple, T = 1000, gradient clipping at 1 and an EMA of 0.9999:

- ours: ``ddpm.train_step.optimization_step`` under Accelerate plus ``ddpm.ema.EMA`` (what ``pipeline/train.py``
  runs, fused Adam, foreach EMA), in float32 with and without channels_last and, with ``--fast``, bf16 autocast +
  channels_last (+ torch.compile on CUDA);
- diffusers: ``UNet2DModel`` + ``DDPMScheduler.add_noise`` + MSE, AdamW and ``EMAModel`` as in diffusers'
  ``train_unconditional`` example (float32, and bf16 autocast with ``--fast``).

Reports images/s, step time, peak GPU memory and, on CUDA, MFU (model FLOPs: 3 × the forward pass, counted by
``torch.utils.flop_counter``, over the GPU's dense bf16 peak). ``--memory`` also checks the 114M-parameter 256²
model: batch 64 in bf16, and batch 8 with activation checkpointing under a 24 GB cap.

diffusers is a benchmark-only extra: ``pip install -e ".[bench]"``.
Usage: python benchmarks/train_throughput.py [--batch 128] [--steps 3] [--warmup 1] [--fast] [--memory]
Writes benchmarks/results/train_throughput-<device>.md.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from _common import write_results
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet, UNetConfig, count_parameters
from ddpm.precision import set_fp32_precision
from ddpm.training.ema import EMA
from ddpm.training.step import MicroBatch, build_optimizer, optimization_step

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense tensor-core peaks (SXM)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, batch: int, warmup: int, steps: int, device: torch.device) -> dict:
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"step_s": seconds, "images_s": batch / seconds, "memory_gib": memory}


def forward_flops(model, x, t) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t)
    return float(counter.get_total_flops())


def ours(batch: int, device: torch.device, bf16: bool, channels_last: bool, compile: bool):
    torch.manual_seed(0)
    accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=device.type == "cpu")
    model = UNet(UNetConfig())
    ema = EMA(model, 0.9999)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    if compile:
        model.compile()
    optimizer = build_optimizer(model, 2e-4)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema.model.to(device)
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 1000))
    x0 = (torch.rand(batch, 3, 32, 32, device=device) * 2 - 1).contiguous(memory_format=fmt)

    def step():
        t = torch.randint(0, 1000, (batch,), device=device)
        micro = [MicroBatch(x0, t, torch.ones(batch, device=device))]
        optimization_step(accelerator, model, diffusion, optimizer, micro, grad_clip=1.0)
        ema.update(accelerator.unwrap_model(model))

    flops = forward_flops(UNet(UNetConfig()).to(device), x0[:1], torch.zeros(1, dtype=torch.long, device=device))
    return step, count_parameters(ema.model), flops


def diffusers_reference(batch: int, device: torch.device, fast: bool):
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    model = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        dropout=0.1,
    ).to(device)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0)
    ema = EMAModel(model.parameters(), decay=0.9999, foreach=True)
    x0 = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1

    def step():
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,), device=device)
        noisy = scheduler.add_noise(x0, noise, t)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            pred = model(noisy, t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.step(model.parameters())

    return step, sum(p.numel() for p in model.parameters())


def memory_check(device: torch.device) -> list[str]:
    """The 114M 256² model: batch 64 bf16; batch 8 bf16 + activation checkpointing under a 24 GB cap."""
    rows = []
    for batch, checkpointing, cap_gb in ((64, False, None), (8, True, 24), (8, False, 24)):
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(cap_gb * 2**30 / total if cap_gb else 1.0)
        torch.cuda.reset_peak_memory_stats()
        model = UNet(UNetConfig(ch_mult=(1, 1, 2, 2, 4, 4), dropout=0.0, resolution=256)).to(device)
        model.gradient_checkpointing = checkpointing
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-5, fused=True)
        diffusion = GaussianDiffusion(get_beta_schedule("linear", 1000))
        x0 = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1
        try:
            for _ in range(2):
                t = torch.randint(0, 1000, (batch,), device=device)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = diffusion.training_losses(model, x0, t)["loss"].mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            torch.cuda.synchronize()
            outcome = f"trains, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        except torch.OutOfMemoryError:
            outcome = "out of memory"
        rows.append(
            f"| 114M 256² | {batch} | bf16 | {'yes' if checkpointing else 'no'} | "
            f"{f'{cap_gb} GB' if cap_gb else 'none'} | {outcome} |"
        )
        del model, optimizer
    torch.cuda.set_per_process_memory_fraction(1.0)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation happens here)")
    ap.add_argument("--fast", action="store_true", help="also run the bf16 variants")
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile our fast variant (default: on CUDA only; CPU compilation takes minutes)",
    )
    ap.add_argument("--memory", action="store_true", help="CUDA only: the 256² model's memory check")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        set_fp32_precision("ieee")  # fp32 rows in IEEE float32, as train.mixed_precision: no trains
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)

    compile_fast = device.type == "cuda" if args.compile is None else args.compile
    variants = [
        ("ours", "fp32", (False, False, False)),
        ("ours", "fp32 + channels_last", (False, True, False)),
        ("diffusers", "fp32", False),
    ]
    if args.fast:
        fast_name = "bf16 + channels_last" + (" + compile" if compile_fast else "")
        variants += [("ours", fast_name, (True, True, compile_fast)), ("diffusers", "bf16 autocast", True)]
    rows, per_image_flops = [], None
    for impl, precision, options in variants:
        if impl == "ours":
            step, n, fwd = ours(args.batch, device, *options)
            per_image_flops = 3 * fwd
        else:
            step, n = diffusers_reference(args.batch, device, options)
        rows.append((impl, precision, n, time_steps(step, args.batch, args.warmup, args.steps, device)))
        AcceleratorState._reset_state(reset_partial_state=True)
        del step

    lines = [
        f"# Training throughput: DDPM CIFAR-10 U-Net (35.7M), 32×32, L_simple, batch {args.batch}",
        "",
        f"Device: {name}; torch {torch.__version__}. Command: `python benchmarks/train_throughput.py "
        f"--batch {args.batch} --steps {args.steps} --warmup {args.warmup}{' --fast' if args.fast else ''}"
        f"{' --memory' if args.memory else ''}`",
        f"Model FLOPs per image per training step (3 × forward): {per_image_flops / 1e9:.2f} GFLOP.",
        "",
        "| implementation | precision | parameters | step (s) | images/s | peak GPU memory (GiB) | MFU |",
        "|---|---|---|---|---|---|---|",
    ]
    for impl, precision, n, r in rows:
        mfu = f"{r['images_s'] * per_image_flops / (peak * 1e12):.1%}" if peak else "n/a"
        lines.append(
            f"| {impl} | {precision} | {n:,} | {r['step_s']:.3f} | {r['images_s']:.1f} | "
            f"{r['memory_gib']:.2f} | {mfu} |"
        )
    lines.append("")
    for ours_row in (r for r in rows if r[0] == "ours"):
        bf16 = ours_row[1].startswith("bf16")
        ref_row = next(r for r in rows if r[0] == "diffusers" and r[1].startswith("bf16") == bf16)
        ratio = ours_row[3]["step_s"] / ref_row[3]["step_s"]
        lines.append(f"- ours ({ours_row[1]}) step time = {ratio:.2f} × diffusers ({ref_row[1]})")
    if args.memory and device.type == "cuda":
        lines += [
            "",
            "| model | batch | precision | activation checkpointing | memory cap | result |",
            "|---|---|---|---|---|---|",
            *memory_check(device),
        ]
    write_results(f"train_throughput-{device.type}.md", lines)


if __name__ == "__main__":
    main()
