"""Evaluation split over processes: what one and two processes must compute alike."""

from pathlib import Path

import numpy as np
import torch

from .networks import sampling_setup
from .params import make_params


def eval_images(n: int = 7, size: int = 8, seed: int = 3) -> torch.Tensor:
    """uint8 N×1×size×size test images."""
    return (torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


def sharded_evaluation(reference: Path, share) -> dict[str, np.ndarray]:
    """The NLL (batches of 3 of 7 images), Inception features (batches of 2 of 7) and a DDIM cell (FID and KID of
    7 samples in chunks of 3) of a small untrained network, as ``share`` computes them: equal for any number of
    processes."""
    from ddpm.evaluation.fid import inception_features
    from ddpm.evaluation.fid_cells import ddim_cell
    from ddpm.evaluation.likelihood import nll_bpd
    from ddpm.parallel import Elsewhere

    inference, _ = sampling_setup("ddim", 0.0)
    images = eval_images()
    # as the test split's loader gives them: another rank's batch only as its size
    batches = [b if share.owns(i) else Elsewhere(len(b)) for i, b in enumerate(images.split(3))]
    nll = nll_bpd(inference.diffusion, inference.model, batches, seed=5, device="cpu", share=share)
    features = inception_features(images.split(2), "cpu", share)
    params = make_params(
        {
            "timesteps": 50,
            "seed": 5,
            "sample": {"batch_size": 3},
            "fid": {"batch_size": 2},
            "ddim_table": {"num_samples": 7},
        }
    )
    cell = ddim_cell(inference, params, 5, 0.0, reference, share)
    return {
        "total_bpd": np.float64(nll["total_bpd"]),
        "prior_bpd": np.float64(nll["prior_bpd"]),
        "vb": nll["vb"],
        "xstart_mse": nll["xstart_mse"],
        "count": np.int64(nll["count"]),
        "features": features,
        "fid": np.float64(cell["fid"]),
        "kid": np.float64(cell["kid"]),
        "cell_samples": np.int64(cell["num_samples"]),
    }
