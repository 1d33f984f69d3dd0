"""DDIM Table 1, one cell: FID of DDIM samples with S steps and one η (a cell of the ddim_fid DVC matrix)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ddpm.config import Params
from ddpm.core.generation import generate
from ddpm.core.options import Eta, Sampler, check_eta
from ddpm.factory import Inference
from ddpm.parallel import ONE_PROCESS, Shard
from ddpm.progress import progress

from .fid import fid_of_features, inception_features, to_uint8_rgb_batches


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


def ddim_cell(inference: Inference, params: Params, steps: int, eta: Eta, reference: Path,
              shard: Shard = ONE_PROCESS) -> dict:
    """``ddim_table.num_samples`` DDIM samples (images drawn by index from ``seed``) and their FID against the
    training split's reference. The samples are made in chunks of ``sample.batch_size`` and rank r makes chunks
    r, r + W, … and their Inception features, so the FID does not depend on the number of processes."""
    n, size, device = params.ddim_table.num_samples, params.sample.batch_size, inference.device
    sampling, features = 0.0, {}
    mine = list(shard.mine(range(0, n, size)))
    bar = progress(f"ddim S={steps} η={eta}", sum(min(size, n - first) for _, first in mine), "img",
                   enabled=shard.is_main)
    for i, first in mine:
        start = time.perf_counter()
        images = generate(inference.diffusion, inference.model, inference.shape, seed=params.seed, start=first,
                          count=min(size, n - first), batch_size=size, device=device, sampler=Sampler.DDIM,
                          steps=steps, eta=eta, skip=params.ddim_table.skip,
                          clip_denoised=params.ddim_table.clip_denoised)
        sampling += time.perf_counter() - start
        chunk = inception_features(to_uint8_rgb_batches(images, params.fid.batch_size), device, desc=None)
        features[i] = chunk.astype(np.float32)  # the extractor's own precision: exact in transit
        bar.update(len(images))
    bar.close()
    all_features = np.concatenate(shard.gather(features)).astype(np.float64)
    return {"steps": steps, "eta": eta, "fid": fid_of_features(all_features, {"train": reference})["train"],
            "num_samples": int(len(all_features)), "sampling_seconds": sampling}
