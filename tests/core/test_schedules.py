import math

import numpy as np
import pytest

from ddpm.core.schedules import get_beta_schedule


def test_linear_is_ddpm_at_1000_and_rescaled_elsewhere():
    b = get_beta_schedule("linear", 1000)
    assert b.dtype == np.float64 and b.shape == (1000,)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    b4 = get_beta_schedule("linear", 4000)
    assert b4[0] == pytest.approx(2.5e-5) and b4[-1] == pytest.approx(0.005)
    # golden: ᾱ_T of DDPM's schedule, a product we can bound by hand: exp(-Σβ) · (1 − O(Σβ²)).
    abar_T = np.prod(1 - b)
    assert abar_T == pytest.approx(4.0358e-5, rel=1e-3)


def test_cosine_matches_iddpm_eq17_by_hand():
    T, s = 10, 0.008
    b = get_beta_schedule("cosine", T)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in range(1, T + 1):
        expected = min(1 - (f(t) / f(0)) / (f(t - 1) / f(0)), 0.999)
        assert b[t - 1] == pytest.approx(expected, rel=1e-12)
    assert b[-1] == 0.999  # ᾱ_T = 0 exactly, so the last β is clipped
    assert np.all(np.diff(b) > 0)


@pytest.mark.parametrize(
    "name,T,msg",
    [
        ("quadratic", 10, "schedule: unknown value 'quadratic'; allowed: linear, cosine"),
        ("linear", 0, "timesteps: must be a positive integer"),
        ("linear", 20, "timesteps: the linear schedule scaled to T=20 reaches β = 1 "),
    ],
)
def test_bad_schedule_arguments(name, T, msg):
    with pytest.raises(ValueError, match=msg):
        get_beta_schedule(name, T)


def test_beta_of_one_is_refused():
    from ddpm.core.diffusion import GaussianDiffusion

    assert get_beta_schedule("linear", 21)[-1] < 1
    with pytest.raises(ValueError, match=r"betas: must be .* values in \(0, 1\)"):
        GaussianDiffusion(np.array([0.1, 1.0]))
