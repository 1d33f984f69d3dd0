"""Bits/dim of Gaussian data under the exact optimal ε model, against the analytic value, as T grows.

x0 ~ N(0.1, 0.2²) per dimension, quantised to 256 levels; the model is the closed-form E[ε | x_t]. Writes
benchmarks/results/gaussian_bpd.md. Usage: python benchmarks/gaussian_bpd.py
"""

import torch
from _common import write_results

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.gaussian import MU, S, discrete_gaussian_bpd, gaussian_eps_model
from ddpm.core.schedules import get_beta_schedule


def main():
    g = torch.Generator().manual_seed(0)
    x0 = MU + S * torch.randn(256, 1, 4, 4, generator=g, dtype=torch.float64)
    x0 = torch.round((x0 + 1) * 127.5) / 127.5 - 1
    analytic = discrete_gaussian_bpd(x0)
    rows = []
    for T in (100, 1000, 4000):
        row = [T]
        for var, exact in (("fixed_large", False), ("fixed_small", False), ("learned", True)):
            d = GaussianDiffusion(get_beta_schedule("linear", T), var_type=var, loss_type="vlb" if exact else "simple")
            out = d.calc_bpd_loop(
                gaussian_eps_model(d, exact_variance=exact),
                x0,
                clip_denoised=False,
                generator=torch.Generator().manual_seed(1),
            )
            row.append(out["total_bpd"].mean().item())
        rows.append(row)
    lines = [
        f"# Gaussian data: bits/dim of the variational bound vs the analytic {analytic:.4f}",
        "",
        "x0 ~ N(0.1, 0.2²) on 256 levels, 256×16 dimensions; model = exact E[ε ∣ x_t]; linear schedule scaled to T. "
        "One noise draw per t (Monte-Carlo error ≈ 0.03 bits/dim).",
        "",
        "| T | σ² = β (fixed_large) | σ² = β̃ (fixed_small) | exact reverse variance | analytic |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {T} | {a:.4f} | {b:.4f} | {c:.4f} | {analytic:.4f} |" for T, a, b, c in rows]
    write_results("gaussian_bpd.md", lines)


if __name__ == "__main__":
    main()
