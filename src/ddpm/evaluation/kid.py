"""KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of MMD² between Inception features
with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over random subsets. The subsets are those
torch-fidelity draws (numpy's ``RandomState(seed)``: samples, then reference, per subset), so the numbers are
torch-fidelity's up to float64 rounding; the kernels are computed where the features are (a GPU, or every host
core) instead of in numpy on one thread."""

from __future__ import annotations

import numpy as np
import torch

SUBSETS = 100  # torch-fidelity's kid_subsets


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² of two equal-sized feature sets under the cubic polynomial kernel (KID paper, Eq. 3 with
    the diagonal terms of k(x, x) and k(y, y) left out)."""
    m, d = x.shape

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T / d + 1) ** 3

    kxx, kyy = kernel(x, x), kernel(y, y)
    within = kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()
    return within / (m * (m - 1)) - 2 * kernel(x, y).sum() / (m * m)


def kernel_inception_distance(
    samples: torch.Tensor, reference: torch.Tensor, subset_size: int, seed: int = 0, subsets: int = SUBSETS
) -> tuple[float, float]:
    """KID's mean and (population) standard deviation over ``subsets`` subsets of ``subset_size`` features drawn
    without replacement from each side, computed in float64 on the features' device."""
    if subset_size > min(len(samples), len(reference)):
        raise ValueError(f"KID: subset size {subset_size} exceeds {min(len(samples), len(reference))} features")
    rng = np.random.RandomState(seed)
    x, y = samples.double(), reference.double()
    values = []
    for _ in range(subsets):
        i = torch.from_numpy(rng.choice(len(x), subset_size, replace=False)).to(x.device)
        j = torch.from_numpy(rng.choice(len(y), subset_size, replace=False)).to(y.device)
        values.append(mmd2_unbiased(x[i], y[j]))
    mmds = torch.stack(values).cpu()
    return float(mmds.mean()), float(mmds.std(correction=0))
