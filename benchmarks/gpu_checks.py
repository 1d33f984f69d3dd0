"""The GPU suite's agreement checks (``gpu_suite.py --only checks``): what the fast path changes, measured on the
device that runs it, on the suite's network with random weights.

- every sampler, compiled against eager, in fp32 and in bf16: the same seeds' uint8 images, their largest
  difference and the share of pixel values that differ;
- bf16 autocast against fp32: ε̂ and x̂0 at five timesteps of noised data, relative RMS difference;
- channels_last against contiguous: seconds per network call at the sampling batch, fp32 and bf16;
- host synchronisations per sampling step (``torch.cuda.set_sync_debug_mode``), eager and compiled: each is a
  stall of the queue the GPU works from (CUDA only).

``--smoke`` on a CPU compiles with torch.compile's ``eager`` backend (Dynamo's tracing and the factory's
wrappers, without Inductor's minutes of C++ compilation), so the test suite runs every line in seconds.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.generation import generate
from ddpm.core.options import Sampler
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet
from ddpm.factory import inference_network

SAMPLER_STEPS = 10  # steps of each sampler compared (the DDPM sampler respaced to them)


@contextlib.contextmanager
def cheap_compile(smoke: bool) -> Iterator[None]:
    """In a smoke run, ``torch.compile`` with the ``eager`` backend (no Inductor); otherwise as it is."""
    if not smoke:
        yield
        return
    real = torch.compile
    torch.compile = functools.partial(real, backend="eager")  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.compile = real  # type: ignore[assignment]


def random_network(sizes, device: torch.device) -> torch.nn.Module:
    """The suite's U-Net with random weights that make a nonzero ε̂: DDPM's initialisation zeroes each block's last
    convolution and the output's, which are drawn here like the others (seeded)."""
    model = UNet(sizes.config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p[0].numel()) ** 0.5)
    return model.to(device).eval()


def _networks(model: torch.nn.Module, device: torch.device, smoke: bool) -> dict[tuple[str, bool], torch.nn.Module]:
    with cheap_compile(smoke):
        return {
            (precision, compiled): inference_network(model, device, precision, compiled)
            for precision in ("fp32", "bf16")
            for compiled in (False, True)
        }


def draw(diffusion: GaussianDiffusion, net: torch.nn.Module, sizes, device: torch.device, **options) -> np.ndarray:
    """One sampling batch of the suite's size, images 0.. of seed 0, as the sample stage draws them."""
    r, b = sizes.config.resolution, sizes.sample_batch
    return generate(diffusion, net, (3, r, r), seed=0, start=0, count=b, batch_size=b, device=device, **options)


def sampler_rows(sizes, device: torch.device, smoke: bool) -> list[str]:
    """Each sampler's images, compiled against eager, in fp32 and bf16 (same seeds, same steps)."""
    diffusion = GaussianDiffusion(get_beta_schedule("linear", sizes.T))
    nets = _networks(random_network(sizes, device), device, smoke)
    steps = min(SAMPLER_STEPS, sizes.ddim_steps)
    rows = [
        f"| sampler ({steps} steps, {sizes.sample_batch} images) | precision | largest |Δ| (of 255) | values "
        "differing |",
        "|---|---|---|---|",
    ]
    with cheap_compile(smoke):
        for sampler in Sampler:
            options = {"sampler": sampler.value, "steps": steps} | ({"eta": 0.0} if sampler is Sampler.DDIM else {})
            for precision in ("fp32", "bf16"):
                images = [
                    draw(diffusion, nets[precision, compiled], sizes, device, **options).astype(np.int16)
                    for compiled in (False, True)
                ]
                delta = np.abs(images[0] - images[1])
                rows.append(
                    f"| {sampler.value} | {precision}, compiled vs eager | {delta.max()} | {(delta > 0).mean():.2%} |"
                )
    return rows


def bf16_rows(sizes, device: torch.device) -> list[str]:
    """ε̂ and x̂0 of bf16 autocast against fp32 at five timesteps: RMS of the difference over RMS of fp32's."""
    diffusion = GaussianDiffusion(get_beta_schedule("linear", sizes.T))
    model = random_network(sizes, device)
    fp32, bf16 = inference_network(model, device, "fp32", False), inference_network(model, device, "bf16", False)
    g = torch.Generator().manual_seed(0)
    r = sizes.config.resolution
    x0 = (torch.rand(sizes.sample_batch, 3, r, r, generator=g) * 2 - 1).to(device)
    rows = ["| t | ε̂: relative RMS difference | x̂0: relative RMS difference |", "|---|---|---|"]
    for t_value in sorted({0, sizes.T // 4, sizes.T // 2, 3 * sizes.T // 4, sizes.T - 1}):
        t = torch.full((x0.shape[0],), t_value, device=device, dtype=torch.long)
        noise = torch.randn(x0.shape, generator=g).to(device)
        x_t = diffusion.q_sample(x0, t, noise=noise)
        with torch.no_grad():
            eps = {name: net(x_t, t).float()[:, :3] for name, net in (("fp32", fp32), ("bf16", bf16))}
        xhat = {name: diffusion.predict_xstart_from_eps(x_t, t, e) for name, e in eps.items()}

        def rel(d):
            return float((d["bf16"] - d["fp32"]).pow(2).mean().sqrt() / d["fp32"].pow(2).mean().sqrt())

        rows.append(f"| {t_value} | {rel(eps):.2e} | {rel(xhat):.2e} |")
    return rows


def layout_rows(sizes, device: torch.device, steps: int) -> list[str]:
    """Seconds per network call at the sampling batch, channels_last against contiguous, fp32 and bf16."""
    r, b = sizes.config.resolution, sizes.sample_batch
    rows = ["| memory format | precision | seconds per call |", "|---|---|---|"]
    for layout in (torch.contiguous_format, torch.channels_last):
        model = random_network(sizes, device).to(memory_format=layout)
        x = torch.randn(b, 3, r, r, device=device).contiguous(memory_format=layout)
        t = torch.zeros(b, device=device, dtype=torch.long)
        for precision in ("fp32", "bf16"):
            net = inference_network(model, device, precision, False)
            with torch.no_grad():
                net(x, t)
                _sync(device)
                start = time.perf_counter()
                for _ in range(steps):
                    net(x, t)
                _sync(device)
            name = "channels_last" if layout is torch.channels_last else "contiguous"
            rows.append(f"| {name} | {precision} | {(time.perf_counter() - start) / steps:.4f} |")
    return rows


def sync_rows(sizes, device: torch.device, smoke: bool) -> list[str]:
    """Host synchronisations per DDIM step, eager and compiled (bf16): counted by CUDA's sync debug mode."""
    if device.type != "cuda":
        return ["host synchronisations per step: not measured: no CUDA"]
    diffusion = GaussianDiffusion(get_beta_schedule("linear", sizes.T))
    nets = _networks(random_network(sizes, device), device, smoke)
    steps = min(SAMPLER_STEPS, sizes.ddim_steps)
    rows = ["| network | host synchronisations per DDIM step |", "|---|---|"]
    for compiled in (False, True):

        def run(net=nets["bf16", compiled]):
            draw(diffusion, net, sizes, device, sampler="ddim", steps=steps, eta=0.0)

        run()  # warm-up (and compilation) outside the count
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        rows.append(f"| bf16{', compiled' if compiled else ''} | {syncs / steps:.1f} |")
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def checks_section(sizes, device: torch.device, smoke: bool) -> list[str]:
    return [
        "## What the fast path changes (random weights)",
        "",
        *sampler_rows(sizes, device, smoke),
        "",
        *bf16_rows(sizes, device),
        "",
        *layout_rows(sizes, device, sizes.timed_steps),
        "",
        *sync_rows(sizes, device, smoke),
    ]
