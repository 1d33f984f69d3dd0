"""One cell of a sampler table: the FID and KID of samples drawn with one setting. DDIM Table 1 has a cell per
S × η (the ddim_fid DVC matrix), the FID-vs-NFE table one per sampler × NFE (the solver_fid matrix)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ddpm.config import Params
from ddpm.core.generation import generate
from ddpm.core.options import ODE_SOLVERS, Eta, Sampler, check_eta, solver_conventions
from ddpm.core.solvers import grid_calls, solver_grid
from ddpm.factory import Inference, load_for_inference
from ddpm.parallel import ONE_PROCESS, WorkShare, every_host_core
from ddpm.progress import progress

from .fid import fid_of_features, inception_features, load_features, to_uint8_rgb_batches, verified_weights_path
from .kid import kernel_inception_distance


def _count(stage: str, name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{stage}: {name} must be a positive integer, got {value!r}")
    return int(value)


def parse_cell(argv: list[str]) -> tuple[int, Eta]:
    """``STEPS ETA`` as the ddim_fid matrix passes them: a positive integer, and η in [0, 1] or sigma_hat."""
    if len(argv) != 2:
        raise ValueError("ddim_fid: usage: ddim_fid.py STEPS ETA")
    steps = _count("ddim_fid", "STEPS", argv[0])
    try:
        return steps, check_eta(argv[1])
    except ValueError as err:
        raise ValueError(f"ddim_fid: ETA {str(err).removeprefix('eta: ')}") from None


def parse_solver_cell(argv: list[str]) -> tuple[Sampler, int]:
    """``SAMPLER NFE`` as the solver_fid matrix passes them."""
    if len(argv) != 2:
        raise ValueError("solver_fid: usage: solver_fid.py SAMPLER NFE")
    if argv[0] not in tuple(Sampler):
        raise ValueError(f"solver_fid: SAMPLER must be one of {', '.join(Sampler)}, got {argv[0]!r}")
    return Sampler(argv[0]), _count("solver_fid", "NFE", argv[1])


def not_applicable(steps: int, timesteps: int, /, **cell) -> dict | None:
    """The cell's result when its steps exceed T (DDIM Table 1's S = 1000 column for a shorter process), else
    None. ``cell`` names the cell (``steps``/``eta`` or ``sampler``/``nfe``)."""
    if steps <= timesteps:
        return None
    return {**cell, "fid": None, "num_samples": 0, "note": f"{steps} > T ({timesteps}): not applicable"}


def cell_network(params: Params, model: Path, device) -> Inference:
    """The network a cell samples with, once the Inception file is known to be there (no sampling before a
    missing extractor is found): ``sample.precision``, compiled if ``sample.compile``."""
    verified_weights_path()
    return load_for_inference(params, model, device, precision=params.sample.precision, compile=params.sample.compile)


def _fid_of_samples(
    inference: Inference, params: Params, n: int, label: str, reference: Path, share: WorkShare, **sampler_options
) -> dict:
    """``n`` samples (image i drawn from seed (params.seed, i)), their FID against the training split's reference
    and their KID (mean ± std over subsets of ``fid.kid_subset_size``, capped by the counts: unbiased, so cells of
    a few hundred samples compare where FID's bias dominates). They are made in chunks of ``sample.batch_size``;
    rank r makes chunks r, r + W, … and their Inception features, so the scores do not depend on the number of
    processes."""
    size, device = params.sample.batch_size, inference.device
    sampling, features = 0.0, {}
    mine = list(share.mine(range(0, n, size)))
    bar = progress(label, sum(min(size, n - first) for _, first in mine), "img", enabled=share.is_main)
    for i, first in mine:
        start = time.perf_counter()
        images = generate(
            inference.diffusion,
            inference.model,
            inference.shape,
            seed=params.seed,
            start=first,
            count=min(size, n - first),
            batch_size=size,
            device=device,
            **sampler_options,
        )
        sampling += time.perf_counter() - start
        chunk = inception_features(to_uint8_rgb_batches(images, params.fid.batch_size), device, desc=None)
        features[i] = chunk.astype(np.float32)  # the extractor's own precision: exact in transit
        bar.update(len(images))
    bar.close()
    all_features = np.concatenate(share.gather(features)).astype(np.float64)
    reference_features = torch.from_numpy(load_features(reference))
    subset = min(len(all_features), len(reference_features), params.fid.kid_subset_size)
    kid, kid_std = None, None
    if subset >= 2:  # the unbiased MMD² needs two features a side; computed where the features are (every host core)
        with every_host_core(device):
            samples = torch.from_numpy(all_features).to(device)
            kid, kid_std = kernel_inception_distance(samples, reference_features.to(device), subset, params.seed)
    return {
        "fid": fid_of_features(all_features, {"train": reference})["train"],
        "kid": kid,
        "kid_std": kid_std,
        "kid_subset_size": subset,
        "num_samples": int(len(all_features)),
        "sampling_seconds": sampling,
    }


def ddim_cell(
    inference: Inference, params: Params, steps: int, eta: Eta, reference: Path, share: WorkShare = ONE_PROCESS
) -> dict:
    """DDIM Table 1's cell (S, η): ``ddim_table.num_samples`` DDIM samples and their FID."""
    table = params.ddim_table
    return {"steps": steps, "eta": eta} | _fid_of_samples(
        inference,
        params,
        table.num_samples,
        f"ddim S={steps} η={eta}",
        reference,
        share,
        sampler=Sampler.DDIM,
        steps=steps,
        eta=eta,
        skip=table.skip,
        clip_denoised=table.clip_denoised,
    )


def solver_cell(
    inference: Inference, params: Params, sampler: Sampler, nfe: int, reference: Path, share: WorkShare = ONE_PROCESS
) -> dict:
    """The FID-vs-NFE cell (sampler, NFE): ``solver_table.num_samples`` samples drawn with ``nfe`` network calls
    each (DDIM: η = 0 with ``ddim_table``'s skip and clip; ancestral: respaced to NFE steps) and their FID."""
    table = params.solver_table
    cell = {"sampler": str(sampler), "nfe": nfe, "network_calls": nfe}
    options = {"sampler": sampler, "steps": nfe}
    if sampler in ODE_SOLVERS:
        spacing, end = solver_conventions(sampler, table.spacing, table.end, inference.shape[-1])
        options |= {"spacing": spacing, "end": end}
        grid, orders = solver_grid(inference.diffusion, sampler, nfe, spacing, end)
        cell |= {"network_calls": grid_calls(sampler, grid, orders), "spacing": str(spacing), "end": str(end)}
    elif sampler is Sampler.DDIM:
        options |= {"eta": 0.0, "skip": params.ddim_table.skip, "clip_denoised": params.ddim_table.clip_denoised}
    return cell | _fid_of_samples(
        inference, params, table.num_samples, f"{sampler} NFE={nfe}", reference, share, **options
    )
