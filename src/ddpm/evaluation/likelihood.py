"""Likelihood and rate–distortion from the variational bound (DDPM §4.3, Table 4, Fig. 5)."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ddpm.core.diffusion import GaussianDiffusion, Model
from ddpm.core.generation import per_image_noise
from ddpm.core.images import to_model_range
from ddpm.parallel import ONE_PROCESS, WorkShare
from ddpm.progress import progress


def _own_terms(images: int | None, batch: int, share: WorkShare, timesteps: int) -> int | None:
    """Image × t terms of the bound this process computes: its batches (r, r + W, …) of ``images`` in batches of
    ``batch``, T terms each; None when the image count is not known."""
    if images is None:
        return None
    sizes = [min(batch, images - lo) for lo in range(0, images, batch)]
    return timesteps * sum(size for i, size in enumerate(sizes) if share.owns(i))


def nll_bpd(
    diffusion: GaussianDiffusion,
    model: Model,
    batches: Iterable[torch.Tensor],
    seed: int,
    device: str | torch.device,
    share: WorkShare = ONE_PROCESS,
) -> dict:
    """Full-T variational bound in bits/dim over uint8 N×C×H×W batches (``calc_bpd_loop`` per batch), its
    progress counted in image × t terms (a batch of the bound can take minutes).

    Image i draws every step's ε from its own generator seeded by (seed, i), and rank r evaluates batches
    r, r + W, …, so the numbers do not depend on the number of processes. Returns, on every rank, the mean
    ``total_bpd`` and ``prior_bpd``, the number of images, and per-t means of ``vb`` (bits/dim) and
    ``xstart_mse`` (on [-1, 1]).
    """
    mine, first, bar = {}, 0, None
    for i, images in enumerate(batches):
        if bar is None:  # the first batch's size gives this process's share of the T terms per image
            terms = _own_terms(getattr(batches, "images", None), len(images), share, diffusion.num_timesteps)
            bar = progress("nll", terms, "term", enabled=share.is_main)
        if share.owns(i):
            noise_fn = per_image_noise(seed, range(first, first + images.shape[0]), tuple(images.shape[1:]), device)
            out = diffusion.calc_bpd_loop(
                model, to_model_range(images).to(device), clip_denoised=True, noise_fn=noise_fn, on_term=bar.update
            )
            mine[i] = {k: out[k].cpu() for k in ("total_bpd", "prior_bpd", "vb", "xstart_mse")}
        first += len(images)  # another rank's batch is an Elsewhere: its size only
    if bar is not None:
        bar.close()
    parts = share.gather(mine)
    if not parts:
        raise ValueError("nll: no images to evaluate")

    def cat(key):
        return torch.cat([p[key] for p in parts]).double()

    return {
        "total_bpd": float(cat("total_bpd").mean()),
        "prior_bpd": float(cat("prior_bpd").mean()),
        "count": first,
        "vb": cat("vb").mean(0).numpy(),
        "xstart_mse": cat("xstart_mse").mean(0).numpy(),
    }


def rate_distortion(prior_bpd: float, vb: np.ndarray, xstart_mse: np.ndarray) -> list[dict]:
    """DDPM Table 4 / Fig. 5 under progressive lossy decoding, one row per step t = T..1 and the lossless end.

    Having received x_t costs rate(t) = L_T + Σ_{s ≥ t} L_s bits/dim (the KL terms of steps s > t−1);
    its distortion is the RMSE of x̂0(x_t) on the [0, 255] scale. The last row adds the decoder term: x0 exactly.
    ``term_bpd`` is the bound's term sent next, L_{t−1} (DDPM eq. 5; L_0 is the decoder's), so the total NLL is
    the last row's rate.
    """
    T = len(vb)
    rows, rate = [], prior_bpd
    for i in reversed(range(T)):  # index i is the papers' step t = i + 1
        rows.append(
            {
                "t": i + 1,
                "rate_bpd": rate,
                "distortion_rmse": float(np.sqrt(xstart_mse[i]) * 127.5),
                "term_bpd": float(vb[i]),
            }
        )
        rate += float(vb[i])
    rows.append({"t": 0, "rate_bpd": rate, "distortion_rmse": 0.0, "term_bpd": 0.0})
    return rows


def likelihood_scores(
    diffusion: GaussianDiffusion,
    model: Model,
    batches: Iterable[torch.Tensor],
    seed: int,
    device: str | torch.device,
    share: WorkShare = ONE_PROCESS,
) -> tuple[dict[str, float], list[dict]]:
    """The test NLL's metrics (``nll_bpd``, ``prior_bpd``, ``nll_images``, ``nll_seconds``) and the
    rate–distortion rows."""
    start = time.perf_counter()
    nll = nll_bpd(diffusion, model, batches, seed, device, share)
    metrics = {
        "nll_bpd": nll["total_bpd"],
        "prior_bpd": nll["prior_bpd"],
        "nll_images": nll["count"],
        "nll_seconds": time.perf_counter() - start,
    }
    return metrics, rate_distortion(nll["prior_bpd"], nll["vb"], nll["xstart_mse"])


def rate_distortion_series(rows: list[dict]) -> dict[str, list[float]]:
    """The rate–distortion rows as step-indexed series; ``nll_term_bpd`` is L_{t−1} in the order t = T..1."""
    return {
        "rd_rate_bpd": [r["rate_bpd"] for r in rows],
        "rd_distortion_rmse": [r["distortion_rmse"] for r in rows],
        "nll_term_bpd": [r["term_bpd"] for r in rows[:-1]],
    }


def read_rate_distortion(path: Path) -> list[dict[str, float]]:
    """The rows ``rate_distortion`` gave, back from the CSV the evaluate stage wrote."""
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
