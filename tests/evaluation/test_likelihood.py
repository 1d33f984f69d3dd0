import numpy as np
import pytest
import torch

from ddpm.core.gaussian import gaussian_eps_model
from ddpm.evaluation.likelihood import nll_bpd, rate_distortion


def test_rate_distortion_by_hand():
    rows = rate_distortion(0.5, np.array([3.0, 2.0, 1.0]), np.array([0.0001, 0.01, 0.25]))
    assert [r["t"] for r in rows] == [3, 2, 1, 0]
    assert [r["rate_bpd"] for r in rows] == [0.5, 1.5, 3.5, 6.5]
    assert [r["distortion_rmse"] for r in rows] == pytest.approx([0.5 * 127.5, 0.1 * 127.5, 0.01 * 127.5, 0.0])
    assert [r["term_bpd"] for r in rows] == [1.0, 2.0, 3.0, 0.0]  # L_2, L_1, L_0 as sent, summing to the total


def test_nll_over_batches_with_gaussian_model(linear100):
    images = [torch.full((4, 1, 2, 2), 140, dtype=torch.uint8), torch.full((2, 1, 2, 2), 150, dtype=torch.uint8)]
    out = nll_bpd(linear100, gaussian_eps_model(linear100), images, seed=0, device="cpu")
    assert out["count"] == 6 and out["vb"].shape == (100,) and out["xstart_mse"].shape == (100,)
    assert out["total_bpd"] == pytest.approx(out["prior_bpd"] + out["vb"].sum(), rel=1e-5)
    rows = rate_distortion(out["prior_bpd"], out["vb"], out["xstart_mse"])
    rates = [r["rate_bpd"] for r in rows]
    assert all(b >= a for a, b in zip(rates, rates[1:], strict=False))
    assert rows[-1]["distortion_rmse"] == 0 and rows[0]["distortion_rmse"] > rows[-2]["distortion_rmse"]
