"""The papers' qualitative figures as uint8 image arrays (no file I/O): progressive generation (DDPM Fig. 6),
samples sharing a latent x_t (DDPM Fig. 7), interpolations (DDPM Fig. 8 coarse-to-fine, DDIM Fig. 6 slerp), and
DDIM reconstructions (DDIM Table 2)."""

from __future__ import annotations

import numpy as np
import torch

from ddpm.config import FiguresParams
from ddpm.core.diffusion import standard_normal
from ddpm.core.images import rows_image, to_uint8_numpy
from ddpm.core.options import Inversion
from ddpm.core.sampling import ancestral_sample_from, ancestral_sample_progressive, ddim_reconstruct
from ddpm.evaluation.interpolation import ddim_interpolate, ddpm_interpolate
from ddpm.factory import Inference
from ddpm.progress import progress

from .paper_tables import diverged_caveat, mse_text
from .plots import captioned, rate_distortion_figure


def latent_timesteps(num_timesteps: int, fractions: list[float]) -> list[int]:
    """0-based steps t = fraction × T (DDPM Fig. 7 uses T/4 … T), distinct and in increasing order."""
    return sorted({min(num_timesteps - 1, max(0, round(f * num_timesteps) - 1)) for f in fractions})


@torch.no_grad()
def progressive_generation(diffusion, model, shape, count: int, frames: int, generator, device) -> np.ndarray:
    """DDPM Fig. 6: x̂0 predicted along one reverse chain per row, at ``frames`` evenly spaced steps (T → 0)."""
    T = diffusion.num_timesteps
    keep = set(np.linspace(T - 1, 0, frames).round().astype(int).tolist())
    chain = ancestral_sample_progressive(diffusion, model, (count, *shape), generator=generator, device=device)
    columns = [to_uint8_numpy(step["pred_xstart"]) for step in chain if step["t"] in keep]
    return rows_image([np.stack(c) for c in zip(*columns, strict=True)])


@torch.no_grad()
def shared_latent_samples(
    diffusion, model, x0: torch.Tensor, steps: list[int], per_latent: int, generator
) -> np.ndarray:
    """DDPM Fig. 7: for one image x0 and each t, the latent x_t ~ q(x_t | x0) (first column) and ``per_latent``
    samples of p(x0 | x_t) from it; a row per t. Larger t keeps only coarse attributes. Every t decodes in one
    chain."""
    latents = [
        diffusion.q_sample(x0[:1], torch.full((1,), t, dtype=torch.long, device=x0.device), generator=generator)
        for t in steps
    ]
    starts = torch.cat([x_t.expand(per_latent, *x_t.shape[1:]) for x_t in latents])
    samples = ancestral_sample_from(diffusion, model, starts, np.repeat(steps, per_latent), generator=generator)
    return rows_image(
        [
            np.concatenate([to_uint8_numpy(x_t.clamp(-1, 1)), to_uint8_numpy(row)])
            for x_t, row in zip(latents, samples.split(per_latent), strict=True)
        ]
    )


@torch.no_grad()
def ddpm_interpolations(
    diffusion, model, x0_a: torch.Tensor, x0_b: torch.Tensor, steps: list[int], count: int, generator
) -> np.ndarray:
    """DDPM Fig. 8: a row per t — source a, ``count`` decodings of (1 − λ) x_t + λ x'_t for λ from 0 to 1,
    source b."""
    mixed = ddpm_interpolate(
        diffusion, model, x0_a[:1], x0_b[:1], steps, np.linspace(0.0, 1.0, count), generator=generator
    )
    ends = to_uint8_numpy(x0_a[:1]), to_uint8_numpy(x0_b[:1])
    return rows_image([np.concatenate([ends[0], to_uint8_numpy(row[:, 0]), ends[1]]) for row in mixed])


@torch.no_grad()
def ddim_interpolations(diffusion, model, shape, pairs: int, count: int, steps: int, generator, device) -> np.ndarray:
    """DDIM Fig. 6: a row per pair of latents x_T, decoded (η = 0, ``steps`` steps) along their slerp."""
    z0 = standard_normal((pairs, *shape), generator=generator, device=device)
    z1 = standard_normal((pairs, *shape), generator=generator, device=device)
    images = ddim_interpolate(diffusion, model, z0, z1, np.linspace(0.0, 1.0, count), steps)  # count×pairs×…
    return rows_image([to_uint8_numpy(images[:, i]) for i in range(pairs)])


@torch.no_grad()
def ddim_reconstructions(
    diffusion, model, x0: torch.Tensor, steps: list[int], inversion: Inversion
) -> tuple[list[dict], np.ndarray]:
    """DDIM Table 2: per S, the mean squared error (pixels in [0, 1]) of decode(encode(x0)) with η = 0, and an
    image with the originals in the first row and one row of reconstructions per S."""
    table, rows = [], [to_uint8_numpy(x0)]
    for s in steps:
        rec = ddim_reconstruct(diffusion, model, x0, s, inversion=inversion)
        table.append({"steps": s, "mse": float(((rec - x0) / 2).pow(2).mean())})
        rows.append(to_uint8_numpy(rec.clamp(-1, 1)))
    return table, rows_image(rows)


def network_calls(T: int, cfg: FiguresParams, latent_steps: list[int], reconstruction_steps: list[int]) -> int:
    """How many times the figures call the network (each call a batch): the total their progress counts."""
    chain = max(latent_steps) + 1  # Figs. 7 and 8: one ancestral chain each, rows joining at their own t
    return T + 2 * chain + cfg.ddim_steps + sum(2 * s for s in reconstruction_steps)  # encode and decode S each


def _counting(model, bar):
    """``model`` that advances ``bar`` by one at every call."""

    def call(*args, **kwargs):
        out = model(*args, **kwargs)
        bar.update(1)
        return out

    return call


def paper_figures(
    inference: Inference, test: torch.Tensor, cfg: FiguresParams, rd_rows: list[dict], seed: int
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Every figure (name → uint8 image) from test images in [-1, 1] and the rate–distortion rows, and DDIM
    Table 2's rows (reconstruction MSE per S ≤ T), computed on the inference device. The random figures draw
    from one CPU generator seeded by ``seed`` (the same noise on any device)."""
    if test.shape[0] < 2:
        raise ValueError(f"figures: the test split has {test.shape[0]} image(s); interpolation needs 2")
    diffusion, model, shape, device = inference.diffusion, inference.model, inference.shape, inference.device
    test = test.to(device)
    T = diffusion.num_timesteps
    gen = torch.Generator().manual_seed(seed)
    latent_steps = latent_timesteps(T, cfg.latent_fractions)
    reconstruction_steps = [s for s in cfg.reconstruction_steps if s <= T]
    bar = progress("figures", network_calls(T, cfg, latent_steps, reconstruction_steps), "calls")
    model = _counting(model, bar)
    t_labels = [f"t = {t + 1}" for t in latent_steps]  # the papers' 1-based t
    points = f"λ = 0 … 1 in {cfg.interpolation_points} steps"
    images = {
        "progressive": captioned(
            progressive_generation(diffusion, model, shape, cfg.images, cfg.frames, gen, device),
            f"Progressive generation (DDPM Fig. 6): x̂0 predicted along each reverse chain at {cfg.frames} steps, "
            f"from t = {T} (left) to t = 1 (right)",
            [f"chain {i + 1}" for i in range(cfg.images)],
        ),
        "shared_latent": captioned(
            shared_latent_samples(diffusion, model, test[:1], latent_steps, cfg.per_latent, gen),
            f"Samples sharing a latent (DDPM Fig. 7): x_t of one test image (first column), then {cfg.per_latent} "
            "samples of p(x0 | x_t); the larger t, the less of the image survives",
            t_labels,
        ),
        "ddpm_interpolation": captioned(
            ddpm_interpolations(diffusion, model, test[:1], test[1:2], latent_steps, cfg.interpolation_points, gen),
            f"Interpolation through x_t (DDPM Fig. 8): test image a, decodings of (1 − λ) x_t + λ x'_t for {points}, "
            "test image b",
            t_labels,
        ),
        "ddim_interpolation": captioned(
            ddim_interpolations(diffusion, model, shape, 4, cfg.interpolation_points, cfg.ddim_steps, gen, device),
            f"Interpolation of x_T (DDIM Fig. 6): two noises slerped, {points}, each decoded by DDIM "
            f"(η = 0, S = {cfg.ddim_steps})",
            [f"pair {i + 1}" for i in range(4)],
        ),
    }
    table, grid = ddim_reconstructions(diffusion, model, test, reconstruction_steps, cfg.inversion)
    images["ddim_reconstruction"] = captioned(grid, *reconstruction_caption(table))
    bar.close()
    images["rate_distortion"] = rate_distortion_figure(rd_rows)
    return images, table


def reconstruction_caption(table: list[dict]) -> tuple[str, list[str], str]:
    """Title, row labels (the originals, then S and its MSE per row) and a caveat for DDIM Table 2's figure."""
    labels = ["original"] + [f"S = {row['steps']}: MSE {mse_text(row['mse'])}" for row in table]
    title = "DDIM encode → decode (DDIM Table 2): test images (top row), then their reconstructions with S steps, η = 0"
    return title, labels, diverged_caveat(table)


def reconstruction_metrics(table: list[dict]) -> dict[str, float]:
    """DDIM Table 2's rows as metrics ``reconstruction_mse_S<S>``."""
    return {f"reconstruction_mse_S{row['steps']}": row["mse"] for row in table}
