"""Per-step cost of the ODE samplers against DDIM: each should cost one network call per NFE plus cheap tensor
work (the target: within a few percent of DDIM per network call).

For every sampler, x_T of batch ``--batch`` is carried to x_0 in ``--nfe`` network calls through
``core.sampling.sample`` (what the sample stage and the solver_fid cells run), with the DDPM CIFAR-10 U-Net
(35.7M, random weights: speed does not depend on them) and with a free network (returns 0.1·x: what is left is
the sampler's own tensor and schedule work). Each runs once untimed, then ``--repeats`` times; medians reported.

Usage: python benchmarks/solver_step_cost.py [--batch 8] [--nfe 10] [--repeats 3]
Writes benchmarks/results/solver_step_cost-<device>.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import cpu_name, write_results

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.options import ODE_SOLVERS, Sampler
from ddpm.core.sampling import sample
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet, UNetConfig


def median_seconds(fn, repeats: int, device) -> float:
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed()
    return statistics.median(timed() for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--nfe", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    unet = UNet(UNetConfig()).to(device).eval()
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 1000))
    shape = (args.batch, 3, 32, 32)
    networks = {"U-Net 35.7M": unet, "free network": lambda x, t: 0.1 * x}
    rows = {}
    for sampler in (Sampler.DDIM, *ODE_SOLVERS):
        for name, net in networks.items():
            calls = []

            def counted(x, t, net=net, calls=calls):
                calls.append(1)
                return net(x, t)

            def run(sampler=sampler, counted=counted):
                noise = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device)
                with torch.no_grad():
                    sample(diffusion, counted, shape, sampler=sampler, steps=args.nfe, noise=noise, device=device)

            seconds = median_seconds(run, args.repeats, device)
            rows[sampler, name] = (seconds, len(calls) // (args.repeats + 1))
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else cpu_name()
    ddim = {name: rows[Sampler.DDIM, name][0] / rows[Sampler.DDIM, name][1] for name in networks}
    lines = [
        f"# ODE samplers: cost per network call against DDIM ({device_name})",
        "",
        f"torch {torch.__version__}; batch {args.batch}, NFE budget {args.nfe}, fp32, medians of "
        f"{args.repeats}; `python benchmarks/solver_step_cost.py --batch {args.batch} --nfe {args.nfe}`",
        "",
        "| sampler | calls | U-Net: s per sample call | per network call | vs DDIM | free network: ms per call |",
        "|---|---|---|---|---|---|",
    ]
    for sampler in (Sampler.DDIM, *ODE_SOLVERS):
        (seconds, calls), (free, _) = rows[sampler, "U-Net 35.7M"], rows[sampler, "free network"]
        per_call = seconds / calls
        lines.append(
            f"| {sampler} | {calls} | {seconds:.3f} | {per_call:.4f} | {per_call / ddim['U-Net 35.7M']:.3f} "
            f"| {1000 * free / calls:.3f} |"
        )
    write_results(f"solver_step_cost-{device.type}.md", lines)


if __name__ == "__main__":
    main()
