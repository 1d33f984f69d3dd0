import math

import numpy as np
import pytest
import torch

from ddpm.core.diffusion import GaussianDiffusion, LossType, VarType
from ddpm.core.gaussian import MU, S, discrete_gaussian_bpd, gaussian_eps_model
from ddpm.core.respace import SpacedDiffusion
from ddpm.core.sampling import ancestral_sample_progressive, ddim_encode, ddim_sample, ddim_sample_progressive
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.spacing import space_timesteps


def test_golden_two_step_process_by_hand():
    d = GaussianDiffusion(np.array([0.1, 0.2]))
    assert d.alphas_cumprod == pytest.approx([0.9, 0.72])
    # β̃_2 = β_2 (1 − ᾱ_1) / (1 − ᾱ_2) = 0.2 · 0.1 / 0.28
    assert d.posterior_variance[1] == pytest.approx(0.02 / 0.28)
    assert d.posterior_mean_coef1[1] == pytest.approx(0.2 * math.sqrt(0.9) / 0.28)
    assert d.posterior_mean_coef2[1] == pytest.approx(0.1 * math.sqrt(0.8) / 0.28)
    # fixed_large uses β̃_2 at the first step (DDPM's decoder) and β_t after it
    assert d.fixed_large_variance == pytest.approx([0.02 / 0.28, 0.2])


def test_q_sample_moments(linear100):
    t_idx = 60
    x0 = torch.full((200_000, 1), 0.5, dtype=torch.float64)
    t = torch.full((x0.shape[0],), t_idx)
    xt = linear100.q_sample(x0, t, generator=torch.Generator().manual_seed(0))
    abar = linear100.alphas_cumprod[t_idx]
    assert xt.mean().item() == pytest.approx(math.sqrt(abar) * 0.5, abs=4e-3)
    assert xt.var().item() == pytest.approx(1 - abar, rel=1e-2)


def test_posterior_is_bayes_rule(linear100):
    """q(x_{t−1}|x_t,x0) ∝ q(x_t|x_{t−1}) q(x_{t−1}|x0): the product of two Gaussians, done by hand."""
    d, t_idx = linear100, 40
    x0 = torch.tensor([[0.3]], dtype=torch.float64)
    xt = torch.tensor([[-0.2]], dtype=torch.float64)
    beta, abar_prev = d.betas[t_idx], d.alphas_cumprod[t_idx - 1]
    # likelihood in x_{t−1}: N(x_t / √α_t, β_t / α_t); prior: N(√ᾱ_{t−1} x0, 1 − ᾱ_{t−1})
    prec = (1 - beta) / beta + 1 / (1 - abar_prev)
    mean = ((1 - beta) / beta * (-0.2 / math.sqrt(1 - beta)) + math.sqrt(abar_prev) * 0.3 / (1 - abar_prev)) / prec
    m, v, lv = d.q_posterior_mean_variance(x0, xt, torch.tensor([t_idx]))
    assert m.item() == pytest.approx(mean, rel=1e-10)
    assert v.item() == pytest.approx(1 / prec, rel=1e-10)
    assert lv.item() == pytest.approx(math.log(1 / prec), rel=1e-10)


def test_float64_in_float64_out(linear100):
    x0 = torch.rand(3, 1, 2, 2, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0, 50, 99])
    out = linear100.p_mean_variance(gaussian_eps_model(linear100), linear100.q_sample(x0, t), t)
    assert all(out[k].dtype == torch.float64 for k in ("mean", "variance", "log_variance", "pred_xstart"))


@pytest.mark.parametrize("mean_type", ["eps", "x0", "v", "mu"])
def test_every_parameterisation_recovers_x0_from_its_own_target(mean_type, linear100):
    d = GaussianDiffusion(linear100.betas, mean_type=mean_type)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 1, 3, 3, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0, 10, 50, 99])
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    xt = d.q_sample(x0, t, noise=noise)
    target = d.mean_target(x0, xt, t, noise)
    out = d.p_mean_variance_from_output(target, xt, t, clip_denoised=False)
    torch.testing.assert_close(out["pred_xstart"], x0)
    torch.testing.assert_close(out["mean"], d.q_posterior_mean_variance(x0, xt, t)[0])


def test_learned_range_endpoints_equal_fixed_variances(linear100):
    d = GaussianDiffusion(linear100.betas, var_type="learned_range", loss_type="hybrid")
    x = torch.zeros(100, 1, 2, 2, dtype=torch.float64)
    t = torch.arange(100)
    small = GaussianDiffusion(linear100.betas, var_type="fixed_small").model_log_variance(None, x, t)
    large = GaussianDiffusion(linear100.betas, var_type="fixed_large").model_log_variance(None, x, t)
    v0 = d.model_log_variance(torch.full_like(x, -1.0), x, t)  # r = −1 → v = 0
    v1 = d.model_log_variance(torch.full_like(x, 1.0), x, t)  # r = +1 → v = 1
    torch.testing.assert_close(v0, small)
    torch.testing.assert_close(v1[1:], large[1:])  # at t = 1, fixed_large uses β̃_2 while eq. 15 uses β_1


def test_respaced_alphas_cumprod_equal_original_at_kept_steps():
    base = GaussianDiffusion(get_beta_schedule("cosine", 1000))
    for spec in ["10,10,10", "ddim50", "250"]:
        kept = space_timesteps(1000, spec)
        spaced = SpacedDiffusion(base, kept)
        np.testing.assert_allclose(spaced.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-9)
        assert spaced.num_timesteps == len(kept)
        echo_t = spaced.call_model(lambda x, t: t, torch.zeros(2, 1), torch.tensor([0, len(kept) - 1]))
        assert echo_t.tolist() == [kept[0], kept[-1]]  # the model sees original indices
    assert space_timesteps(1000, "10,10,10")[:3] == [0, 37, 74] and len(space_timesteps(1000, "ddim50")) == 50


def test_the_respacing_map_reaches_each_device_once():
    """Every sampling step maps t to the original process's indices: the map is copied to a device once, not
    once per step (a host-to-GPU copy per step would make the host wait for the GPU)."""
    spaced = SpacedDiffusion(GaussianDiffusion(get_beta_schedule("linear", 100)), space_timesteps(100, "ddim10"))
    first = spaced.model_timesteps(torch.tensor([0, 9]))
    again = spaced.model_timesteps(torch.tensor([9, 0]))
    assert first.tolist() == [0, 90] and again.tolist() == [90, 0]
    assert list(spaced._device_maps) == [torch.device("cpu")]


def test_ddim_eta1_over_all_steps_is_ancestral_with_posterior_variance(linear100):
    d = GaussianDiffusion(linear100.betas, var_type="fixed_small")
    model = gaussian_eps_model(d)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 1, 2, 2, generator=g, dtype=torch.float64)
    for step in reversed(range(1, 100)):
        t = torch.full((8,), step)
        z = torch.randn(x.shape, generator=g, dtype=torch.float64)
        a = d.p_sample(model, x, t, clip_denoised=False, noise=z)["sample"]
        b = SpacedDiffusion(d, range(100)).ddim_step(model, x, t, eta=1.0, clip_denoised=False, noise=z)["sample"]
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        x = a


def test_ddim_encode_decode_reconstructs_with_exact_denoiser(linear100):
    d = GaussianDiffusion(get_beta_schedule("linear", 1000))
    model = gaussian_eps_model(d)
    x0 = MU + S * torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = []
    for steps in (50, 1000):
        xT = ddim_encode(d, model, x0, steps)
        rec = ddim_sample(d, model, x0.shape, steps, noise=xT, clip_denoised=False, dtype=torch.float64)
        errors.append((rec - x0).abs().max().item())
    assert errors[1] < 0.01 and errors[1] < errors[0] / 5


def test_ddim_eta0_reproduces_gaussian_data_moments():
    d = GaussianDiffusion(get_beta_schedule("linear", 1000))
    x = ddim_sample(
        d,
        gaussian_eps_model(d),
        (4000, 1, 2, 2),
        1000,
        eta=0.0,
        clip_denoised=False,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    assert x.mean().item() == pytest.approx(MU, abs=0.01)
    assert x.std().item() == pytest.approx(S, rel=0.03)


def test_bpd_approaches_analytic_value_for_gaussian_data(gaussian_grid_data):
    analytic = discrete_gaussian_bpd(gaussian_grid_data)
    gaps = []
    for T in (100, 1000):
        d = GaussianDiffusion(get_beta_schedule("linear", T), var_type="fixed_large")
        out = d.calc_bpd_loop(
            gaussian_eps_model(d), gaussian_grid_data, clip_denoised=False, generator=torch.Generator().manual_seed(0)
        )
        assert out["vb"].shape == (64, T) and out["xstart_mse"].shape == (64, T)
        gaps.append(out["total_bpd"].mean().item() - analytic)
    assert 0 < gaps[1] < gaps[0] < 0.2
    # with the exact reverse variance too, the bound is tight up to Monte-Carlo noise
    d = GaussianDiffusion(get_beta_schedule("linear", 1000), var_type="learned", loss_type="vlb")
    out = d.calc_bpd_loop(
        gaussian_eps_model(d, exact_variance=True),
        gaussian_grid_data,
        clip_denoised=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert out["total_bpd"].mean().item() == pytest.approx(analytic, abs=0.03)


def test_prior_term_is_small_for_ddpm_schedule():
    d = GaussianDiffusion(get_beta_schedule("linear", 1000))
    x0 = torch.ones(2, 3, 4, 4, dtype=torch.float64)
    # KL(N(√ᾱ_T, 1−ᾱ_T) ‖ N(0,1)) per dim, by hand
    a = d.alphas_cumprod[-1]
    expected = 0.5 * (-1 - math.log(1 - a) + (1 - a) + a) / math.log(2)
    assert d.prior_bpd(x0)[0].item() == pytest.approx(expected, rel=1e-9)


def test_hybrid_vlb_term_does_not_train_the_mean(linear100):
    d = GaussianDiffusion(linear100.betas, var_type="learned_range", loss_type="hybrid", hybrid_lambda=1.0)
    mean_w = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    var_w = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    model = lambda x, t: torch.cat([mean_w * x, var_w * torch.ones_like(x)], 1)  # noqa: E731
    x0 = torch.rand(8, 1, 2, 2, dtype=torch.float64) * 2 - 1
    t = torch.randint(1, 100, (8,))
    noise = torch.randn_like(x0)
    terms = d.training_losses(model, x0, t, noise=noise)
    (g_mse,) = torch.autograd.grad(terms["mse"].sum(), mean_w, retain_graph=True)
    g_loss_mean, g_loss_var = torch.autograd.grad(terms["loss"].sum(), [mean_w, var_w])
    torch.testing.assert_close(g_loss_mean, g_mse)  # the VLB part adds nothing to the mean's gradient
    assert g_loss_var.abs().item() > 0


def test_vlb_objective_is_T_times_the_sampled_term(linear100):
    d = GaussianDiffusion(linear100.betas, loss_type="vlb")
    model = gaussian_eps_model(d)
    x0 = torch.rand(4, 1, 2, 2, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0, 1, 50, 99])
    terms = d.training_losses(model, x0, t, noise=torch.zeros_like(x0))
    torch.testing.assert_close(terms["loss"], 100 * terms["vb"])
    assert set(terms) == {"loss", "mse", "vb"}


def test_learned_variance_with_simple_loss_is_refused():
    with pytest.raises(ValueError, match="variance: 'learned_range' gets no gradient from objective 'simple'"):
        GaussianDiffusion(np.full(10, 0.1), var_type=VarType.LEARNED_RANGE, loss_type=LossType.SIMPLE)


@pytest.mark.parametrize(
    "key,kwargs",
    [("mean_type", {"mean_type": "score"}), ("var_type", {"var_type": "big"}), ("loss_type", {"loss_type": "l1"})],
)
def test_unknown_options_name_key_and_allowed_values(key, kwargs):
    with pytest.raises(ValueError, match=rf"^{key}: unknown value .*; allowed: "):
        GaussianDiffusion(np.full(10, 0.1), **kwargs)


def test_progressive_samplers_yield_every_step(linear100):
    model = gaussian_eps_model(linear100)
    steps = list(ancestral_sample_progressive(linear100, model, (2, 1, 2, 2), generator=torch.Generator()))
    assert [s["t"] for s in steps] == list(range(99, -1, -1))
    ddim = list(ddim_sample_progressive(linear100, model, (2, 1, 2, 2), 10, generator=torch.Generator()))
    assert [s["t"] for s in ddim] == list(range(90, -1, -10))


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"steps": 101}, r"steps: 101 exceeds timesteps \(100\)"),
        ({"eta": 1.5}, "eta: must be a number in"),
        ({"skip": "cubic"}, "skip: unknown value 'cubic'"),
    ],
)
def test_bad_ddim_arguments(kwargs, msg, linear100):
    args = {"steps": 10} | kwargs
    with pytest.raises(ValueError, match=msg):
        ddim_sample(linear100, gaussian_eps_model(linear100), (1, 1, 2, 2), **args)
