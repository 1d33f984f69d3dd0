import math

import pytest
import torch

from ddpm.core.losses import discretized_gaussian_log_likelihood, normal_kl
from ddpm.core.options import DecoderCDF


def test_kl_of_identical_gaussians_is_zero():
    m = torch.randn(5, 3, dtype=torch.float64)
    lv = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(normal_kl(m, lv, m, lv), torch.zeros_like(m))


def test_kl_golden_values():
    z = torch.zeros((), dtype=torch.float64)
    # KL(N(0,1) ‖ N(1,1)) = ½ (μ difference)² = 0.5
    assert normal_kl(z, z, z + 1, z).item() == pytest.approx(0.5)
    # KL(N(0,1) ‖ N(0,4)) = ½ (log 4 + 1/4 − 1)
    assert normal_kl(z, z, z, z + math.log(4)).item() == pytest.approx(0.5 * (math.log(4) + 0.25 - 1))


@pytest.mark.parametrize(
    "mean,log_scale",
    [(0.0, math.log(0.1)), (0.9, math.log(0.02)), (-1.2, math.log(0.5)), (0.3, math.log(1e-4)), (0.0, math.log(3.0))],
)
def test_discretized_decoder_sums_to_one_over_256_bins(mean, log_scale):
    x = torch.linspace(-1, 1, 256, dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full_like(x, log_scale))
    assert torch.exp(logp).sum().item() == pytest.approx(1.0, abs=1e-9)


def test_discretized_decoder_golden_interior_bin():
    # P(bin around 0 | N(0, 1/255²)) = Φ(1) − Φ(−1) = erf(1/√2)
    x = torch.zeros(1, dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(x, x, torch.full_like(x, math.log(1 / 255)), DecoderCDF.EXACT)
    assert torch.exp(logp).item() == pytest.approx(math.erf(1 / math.sqrt(2)), rel=1e-12)


def test_discretized_decoder_defaults_to_the_authors_tanh_cdf():
    # DDPM's and iDDPM's Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))): the bin is tanh(√(2/π) · 1.044715)
    x = torch.zeros(1, dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(x, x, torch.full_like(x, math.log(1 / 255)))
    assert torch.exp(logp).item() == pytest.approx(math.tanh(math.sqrt(2 / math.pi) * 1.044715), rel=1e-12)
