"""DDIM Table 1, one cell: FID of DDIM samples with S steps and one η (a cell of the ddim_fid DVC matrix)."""

from __future__ import annotations

import time
from pathlib import Path

from ddpm.config import Params
from ddpm.core.generation import generate
from ddpm.core.options import Eta, Sampler, check_eta
from ddpm.factory import Inference

from .fid import fid_of_images


def parse_cell(argv: list[str]) -> tuple[int, Eta]:
    """``STEPS ETA`` as the matrix passes them: a positive integer, and η in [0, 1] or sigma_hat."""
    if len(argv) != 2:
        raise ValueError("ddim_fid: usage: ddim_fid.py STEPS ETA")
    steps, eta = argv
    if not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"ddim_fid: STEPS must be a positive integer, got {steps!r}")
    try:
        return int(steps), check_eta(eta)
    except ValueError as err:
        raise ValueError(f"ddim_fid: ETA {str(err).removeprefix('eta: ')}") from None


def not_applicable(steps: int, eta: Eta, timesteps: int) -> dict | None:
    """The cell's result when S > T (DDIM Table 1's S = 1000 column for a shorter process), else None."""
    if steps <= timesteps:
        return None
    return {"steps": steps, "eta": eta, "fid": None, "num_samples": 0,
            "note": f"S > T ({timesteps}): not applicable"}


def ddim_cell(inference: Inference, params: Params, steps: int, eta: Eta, reference: Path) -> dict:
    """``ddim_table.num_samples`` DDIM samples (images drawn by index from ``seed``) and their FID against the
    training split's reference."""
    start = time.perf_counter()
    images = generate(inference.diffusion, inference.model, inference.shape, seed=params.seed, start=0,
                      count=params.ddim_table.num_samples, batch_size=params.sample.batch_size,
                      device=inference.device, sampler=Sampler.DDIM, steps=steps, eta=eta, skip=params.ddim_table.skip,
                      clip_denoised=params.ddim_table.clip_denoised)
    sampling = time.perf_counter() - start
    fids, _ = fid_of_images(images, {"train": reference}, params.fid.batch_size)
    return {"steps": steps, "eta": eta, "fid": fids["train"], "num_samples": int(len(images)),
            "sampling_seconds": sampling}
