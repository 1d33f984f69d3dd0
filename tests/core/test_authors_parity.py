"""The samplers as the papers' released code runs them: outputs of that code on a synthetic ε-network
(``golden/authors_samplers.npz``, made once from the authors' repositories: ``golden/README.md``) against ours on
the same network, schedule and x_T.

- DDPM's ancestral sampling with σ² = β̃ (its 256² models) and σ² = β (CIFAR-10), as pesser/pytorch_diffusion ports
  DDPM's TensorFlow code;
- DPM-Solver++(2M) with the authors' first-order last move below 10 steps, and DPM-Solver-2/3 (singlestep) with
  intermediate points spaced as the grid, on DPM-Solver's code (LuChengTHU/dpm-solver), which clips λ at −5.1
  (the cosine schedule's last 16 of 4000 steps);
- DPM-Solver++(3M), the configuration of DPM-Solver's examples, at NFE 5–20, 25 and 50;
- UniPC (wl-zhao/UniPC ``uni_pc.py``) with B(h) = h (``bh1``, its unconditional CIFAR-10 script) and e^h − 1
  (``bh2``), orders 2 and 3, at NFE 5–20, 25 and 50;
- EDM's Heun sampler (NVlabs/edm ``edm_sampler``) running a discrete-time network at its own noise levels.

``golden/make_authors_samplers.py`` makes the arrays from those repositories (``golden/README.md``).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.authors_network import SCHEDULES, normal, synthetic_eps

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.flow import NoiseSchedule
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.solvers import DPM_SOLVER_CLIP_LAMBDA, ode_sample

GOLDEN = np.load(Path(__file__).with_name("golden") / "authors_samplers.npz")
SPACINGS = {"logSNR": "logsnr", "time_uniform": "time_uniform", "time_quadratic": "time_quadratic"}
MULTISTEP_NFE = [*range(5, 21), 25, 50]


@pytest.fixture(scope="module", params=list(SCHEDULES))
def setting(request):
    name, T = SCHEDULES[request.param]
    return request.param, GaussianDiffusion(get_beta_schedule(name, T)), synthetic_eps(name, T)


def test_the_clip_keeps_the_steps_dpm_solver_keeps(setting):
    key, diffusion, _ = setting
    kept = NoiseSchedule(diffusion, DPM_SOLVER_CLIP_LAMBDA).num_timesteps
    assert kept == int(GOLDEN[f"{key}_kept_steps"])  # linear T = 1000: all; cosine T = 4000: 3984


@pytest.mark.parametrize("nfe", [8, 10, 12, 13, 20])
@pytest.mark.parametrize("skip", ["logSNR", "time_uniform"])
def test_dpm_solver_pp_2m_is_the_authors(setting, nfe, skip):
    key, diffusion, eps = setting
    x, calls = ode_sample(
        diffusion, eps, normal(0, (3, 2, 4, 4)), "dpm_solver_pp_2m", nfe, spacing=SPACINGS[skip], end="step0"
    )
    assert calls == nfe
    np.testing.assert_allclose(x.numpy(), GOLDEN[f"{key}_pp2m_{skip}_{nfe}"], rtol=0, atol=1e-8)


@pytest.mark.parametrize("skip", ["logSNR", "time_uniform"])
def test_dpm_solver_pp_3m_is_the_authors(setting, skip):
    key, diffusion, eps = setting
    for nfe in MULTISTEP_NFE:
        x, calls = ode_sample(
            diffusion, eps, normal(0, (3, 2, 4, 4)), "dpm_solver_pp_3m", nfe, spacing=SPACINGS[skip], end="step0"
        )
        assert calls == nfe
        np.testing.assert_allclose(x.numpy(), GOLDEN[f"{key}_pp3m_{skip}_{nfe}"], rtol=0, atol=1e-8, err_msg=str(nfe))


@pytest.mark.parametrize("skip", ["logSNR", "time_uniform"])
@pytest.mark.parametrize(
    "sampler,variant,order",
    [("unipc_bh1_2", "bh1", 2), ("unipc_bh1_3", "bh1", 3), ("unipc_2", "bh2", 2), ("unipc_3", "bh2", 3)],
)
def test_unipc_is_the_authors(setting, sampler, variant, order, skip):
    key, diffusion, eps = setting
    for nfe in MULTISTEP_NFE:
        x, calls = ode_sample(
            diffusion, eps, normal(0, (3, 2, 4, 4)), sampler, nfe, spacing=SPACINGS[skip], end="step0"
        )
        assert calls == nfe
        golden = GOLDEN[f"{key}_unipc_{variant}_{order}_{skip}_{nfe}"]
        np.testing.assert_allclose(x.numpy(), golden, rtol=0, atol=1e-8, err_msg=str(nfe))


def test_unipc_variants_differ():
    """bh1 and bh2 are told apart at NFE 10 (by 1.8e-2 linear, 0.47 cosine on the test network)."""
    for key in SCHEDULES:
        gap = np.abs(GOLDEN[f"{key}_unipc_bh1_3_logSNR_10"] - GOLDEN[f"{key}_unipc_bh2_3_logSNR_10"]).max()
        assert gap > 1e-3


@pytest.mark.parametrize("nfe", [10, 11, 12])
@pytest.mark.parametrize("skip", list(SPACINGS))
@pytest.mark.parametrize("order", [2, 3])
def test_singlestep_dpm_solver_is_the_authors(setting, order, skip, nfe):
    key, diffusion, eps = setting
    x, calls = ode_sample(
        diffusion, eps, normal(0, (3, 2, 4, 4)), f"dpm_solver_{order}", nfe, spacing=SPACINGS[skip], end="step0"
    )
    assert calls == nfe
    np.testing.assert_allclose(x.numpy(), GOLDEN[f"{key}_single{order}_{skip}_{nfe}"], rtol=0, atol=1e-8)


@pytest.mark.parametrize("nfe", [9, 11, 19])
def test_heun_is_edms_sampler_on_the_networks_noise_levels(setting, nfe):
    key, diffusion, eps = setting
    x, calls = ode_sample(diffusion, eps, normal(0, (3, 2, 4, 4)), "heun", nfe)  # auto: EDM's grid, clean end
    assert calls == nfe
    np.testing.assert_allclose(x.numpy(), GOLDEN[f"{key}_heun_{nfe}"], rtol=0, atol=1e-8)


@pytest.mark.parametrize("nfe", [139, 199])
def test_heun_runs_any_budget_as_edm_does(setting, nfe):
    """Past ~137 calls at T = 1000 EDM's rounded levels repeat steps; its sampler makes those moves of length
    zero (x unchanged), ours skips them: the same x with fewer calls."""
    key, diffusion, eps = setting
    x, calls = ode_sample(diffusion, eps, normal(0, (3, 2, 4, 4)), "heun", nfe)
    assert calls <= nfe and (calls < nfe or key == "cosine4000")
    np.testing.assert_allclose(x.numpy(), GOLDEN[f"{key}_heun_{nfe}"], rtol=0, atol=1e-8)


@pytest.mark.parametrize("variance,authors", [("fixed_small", "fixedsmall"), ("fixed_large", "fixedlarge")])
def test_ancestral_sampling_is_ddpms_with_each_variance(variance, authors):
    """DDPM's 256² models sample with β̃ (diffusion_utils), CIFAR-10 with β (diffusion_utils_2); float32 as there."""
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 1000), var_type=variance)
    eps = synthetic_eps("linear", 1000)
    noise = normal(1, (1000, 3, 2, 4, 4)).float()
    x = normal(0, (3, 2, 4, 4)).float()
    with torch.no_grad():
        for i in reversed(range(1000)):
            x = diffusion.p_sample(
                lambda x, t: eps(x.double(), t).float(), x, torch.full((3,), i), clip_denoised=True, noise=noise[i]
            )["sample"]
    np.testing.assert_allclose(x.numpy(), GOLDEN[f"ddpm_ancestral_{authors}"], rtol=0, atol=1e-5)
    other = GOLDEN[f"ddpm_ancestral_{'fixedlarge' if authors == 'fixedsmall' else 'fixedsmall'}"]
    assert np.abs(x.numpy() - other).max() > 1e-2  # the two variances are told apart


@pytest.mark.parametrize(
    "profile",
    [
        "ddpm_lsun256",
        "ddpm_lsun256_large",
        "released_ddpm_church",
        "released_ddpm_bedroom",
        "released_ddpm_cat",
        "released_ddpm_celebahq",
    ],
)
def test_ddpms_256_profiles_sample_as_its_code_did(profile):
    from helpers.params import make_params

    params = make_params(profile=profile)
    assert params.variance.value == "fixed_small" and params.sample.sampler.value == "ancestral"
    assert make_params(profile="released_ddpm_cifar10").variance.value == "fixed_large"
