"""Where the papers are silent, their code decided: DDIM's τ with repeats, clipping per sampler, the Euler encoder,
σ̂ with a learned variance, DDPM's unscaled true-bound loss, iDDPM's respacing rounding, the tanh CDF, and the
U-Net's padding and embeddings."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.networks import small_unet

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.gaussian import gaussian_eps_model
from ddpm.core.losses import discretized_gaussian_log_likelihood
from ddpm.core.options import DecoderCDF, Embedding, OptionError, Padding, default_clip
from ddpm.core.sampling import ddim_encode, ddim_sample, sample
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.spacing import ddim_timesteps, space_timesteps
from ddpm.core.unet import Downsample, timestep_embedding


@pytest.mark.parametrize("steps", [10, 20, 50, 100, 1000])
def test_quadratic_tau_exists_for_every_column_of_ddim_table_1(steps):
    seq = ddim_timesteps(1000, steps, "quad")
    assert len(seq) == steps and seq[0] == 0 and seq[-1] == 800 and np.all(np.diff(seq) >= 0)
    assert (len(set(seq)) < steps) == (steps >= 50)  # the early steps repeat from S = 50 on


def ddim_code_generalized_steps(diffusion, model, x, seq):
    """DDIM's released sampler at η = 0 written out as its code does it, repeats of τ included: ᾱ from the padded
    β array (ᾱ = 1 before the first step), each pair (τ_i, τ_{i−1}) one network call."""
    a_bar = np.append(1.0, diffusion.alphas_cumprod)
    for i, j in zip(reversed(seq), reversed([-1] + list(seq[:-1])), strict=True):
        at, at_next = a_bar[i + 1], a_bar[j + 1]
        eps = model(x, torch.full((x.shape[0],), i))
        x0 = (x - eps * math.sqrt(1 - at)) / math.sqrt(at)
        x = math.sqrt(at_next) * x0 + math.sqrt(1 - at_next) * eps
    return x


def test_ddim_with_repeated_quadratic_steps_equals_ddims_code():
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 1000))
    model = gaussian_eps_model(diffusion)
    x_T = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seq = ddim_timesteps(1000, 100, "quad")
    ours = ddim_sample(diffusion, model, x_T.shape, 100, skip="quad", noise=x_T, dtype=torch.float64)
    torch.testing.assert_close(ours, ddim_code_generalized_steps(diffusion, model, x_T, seq), rtol=1e-9, atol=1e-9)


def test_clipping_defaults_to_each_samplers_code():
    assert default_clip("ancestral") and default_clip("ddim", "sigma_hat")
    assert not default_clip("ddim", 0.0) and not default_clip("ddim", 1.0)


def test_ddim_does_not_clip_by_default_and_clips_when_asked(linear100):
    def wide(x, t):  # ε = −3 x: x̂0 = (1 + 3√(1−ᾱ)) x / √ᾱ leaves [-1, 1]
        return -3.0 * x

    noise = torch.full((1, 1, 2, 2), 2.0, dtype=torch.float64)
    options = {"sampler": "ddim", "steps": 10, "noise": noise, "dtype": torch.float64}
    unclipped = sample(linear100, wide, noise.shape, **options)
    clipped = sample(linear100, wide, noise.shape, clip_denoised=True, **options)
    assert unclipped.abs().max() > 1.5 and clipped.abs().max() <= 1.0 + 1e-12


def test_sigma_hat_with_a_learned_variance_ignores_the_variance_channels(linear100):
    learned = GaussianDiffusion(linear100.betas, var_type="learned_range", loss_type="hybrid")
    eps = gaussian_eps_model(linear100)

    def with_variance(x, t):
        return torch.cat([eps(x, t), torch.full_like(x, 0.3)], dim=1)

    noise = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def run(diffusion, model):
        return ddim_sample(
            diffusion, model, noise.shape, 10, eta="sigma_hat", noise_fn=lambda: noise.clone(), dtype=torch.float64
        )

    torch.testing.assert_close(run(learned, with_variance), run(linear100, eps), rtol=0, atol=0)


def test_euler_encoder_evaluates_the_network_at_the_step_each_move_starts_from(linear100):
    eps = gaussian_eps_model(linear100)
    seen = {"euler": [], "target": []}
    x0 = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    for inversion, calls in seen.items():

        def spy(x, t, calls=calls):
            calls.append(int(t[0]))
            return eps(x, t)

        ddim_encode(linear100, spy, x0, 5, inversion=inversion)
    tau = ddim_timesteps(100, 5)
    assert seen["target"] == tau
    assert seen["euler"] == [tau[0]] + tau[:-1]  # x0 has no step of its own: the first move uses τ_1


def test_ddpm_true_bound_objective_is_the_unscaled_term_and_ivlb_is_t_times_it(linear100):
    x0 = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = torch.tensor([0, 5, 50, 99])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    model = gaussian_eps_model(linear100)
    kl = GaussianDiffusion(linear100.betas, loss_type="kl").training_losses(model, x0, t, noise=noise)
    vlb = GaussianDiffusion(linear100.betas, loss_type="vlb").training_losses(model, x0, t, noise=noise)
    torch.testing.assert_close(kl["loss"], kl["vb"], rtol=0, atol=0)
    torch.testing.assert_close(vlb["loss"], 100 * kl["vb"])


def test_respacing_rounds_the_accumulated_stride_as_iddpm():
    """At T = 1000 with 21 steps the stride 49.95 accumulates to 499.4999…: iDDPM keeps 499, i·stride gives 500."""
    kept = space_timesteps(1000, "21")
    assert 499 in kept and 500 not in kept and len(kept) == 21


@pytest.mark.parametrize("cdf", list(DecoderCDF))
def test_decoder_probabilities_sum_to_one_for_either_cdf(cdf):
    bins = torch.linspace(-1, 1, 256, dtype=torch.float64).view(256, 1)
    mean = torch.tensor([[0.1]], dtype=torch.float64).expand(256, 1)
    log_scale = torch.full((256, 1), math.log(0.05), dtype=torch.float64)
    total = discretized_gaussian_log_likelihood(bins, mean, log_scale, cdf).exp().sum()
    assert abs(float(total) - 1.0) < 1e-9


def test_tanh_cdf_differs_from_the_exact_one_by_small_amounts():
    """A decoder as trained models have it: the mean within a bin of x, σ about a bin wide."""
    x = torch.linspace(-1, 1, 256, dtype=torch.float64)
    offset = torch.rand(256, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5
    mean, log_scale = x + offset * 2 / 255, torch.full_like(x, math.log(1.5 / 255))
    exact = discretized_gaussian_log_likelihood(x, mean, log_scale, DecoderCDF.EXACT)
    approx = discretized_gaussian_log_likelihood(x, mean, log_scale, DecoderCDF.TANH)
    gap = float((exact - approx).abs().mean()) / math.log(2)  # bits/dim
    assert 0 < gap < 0.01


def test_same_padding_pads_bottom_and_right_only():
    torch.manual_seed(0)
    same, symmetric = Downsample(2, Padding.SAME), Downsample(2, Padding.SYMMETRIC)
    symmetric.load_state_dict(same.state_dict())
    x = torch.randn(1, 2, 8, 8)
    w, b = same.conv.weight, same.conv.bias
    torch.testing.assert_close(same(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2))
    torch.testing.assert_close(symmetric(x), F.conv2d(F.pad(x, (1, 1, 1, 1)), w, b, stride=2))
    assert not torch.allclose(same(x), symmetric(x))


def test_embeddings_by_hand():
    """dim 4, t = 1: DDPM [sin 1, sin 10⁻⁴, cos 1, cos 10⁻⁴]; iDDPM [cos 1, cos 10⁻², sin 1, sin 10⁻²]."""
    t = torch.tensor([1])
    ddpm = timestep_embedding(t, 4, Embedding.DDPM)[0].double()
    iddpm = timestep_embedding(t, 4, Embedding.IDDPM)[0].double()
    expected_ddpm = [math.sin(1), math.sin(1e-4), math.cos(1), math.cos(1e-4)]
    expected_iddpm = [math.cos(1), math.cos(1e-2), math.sin(1), math.sin(1e-2)]
    torch.testing.assert_close(ddpm, torch.tensor(expected_ddpm, dtype=torch.float64), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(iddpm, torch.tensor(expected_iddpm, dtype=torch.float64), rtol=1e-6, atol=1e-7)


def test_model_files_from_before_the_conventions_load_with_the_old_ones(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from ddpm.storage.model_files import load_model, save_model

    model = small_unet()
    path = tmp_path / "new.safetensors"
    save_model(model, path)
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["ddpm"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    for key in ("norm_eps", "downsample_padding", "time_embedding", "time_scale", "qkv_layout"):
        header["unet_config"].pop(key)
    save_file(state, str(tmp_path / "old.safetensors"), metadata={"ddpm": json.dumps(header)})
    old = load_model(tmp_path / "old.safetensors", "cpu").config
    assert (old.norm_eps, old.downsample_padding, old.time_embedding) == (1e-5, Padding.SYMMETRIC, Embedding.DDPM)
    assert load_model(path, "cpu").config == model.config


def test_the_authors_uniform_ddim_rules_by_name():
    """S = 7 of T = 1000: ⌊iT/S⌋ keeps 7 steps; DDIM's code range(0, T, T // S) runs 8 (0 … 994); iDDPM's "ddim7"
    the first integer stride that gives exactly 7 (143). Where S divides T all three agree."""
    assert ddim_timesteps(1000, 7, "uniform") == [0, 142, 285, 428, 571, 714, 857]
    assert ddim_timesteps(1000, 7, "uniform_ddim") == list(range(0, 1000, 142)) and len(range(0, 1000, 142)) == 8
    assert ddim_timesteps(1000, 7, "uniform_iddpm") == list(range(0, 1000, 143))
    for steps in (10, 20, 50, 100, 1000):
        rules = {tuple(ddim_timesteps(1000, steps, rule)) for rule in ("uniform", "uniform_ddim", "uniform_iddpm")}
        assert len(rules) == 1
    with pytest.raises(OptionError, match="respacing: no integer stride gives exactly 600 of 1000 steps"):
        ddim_timesteps(1000, 600, "uniform_iddpm")


def test_ddims_own_uniform_rule_runs_its_extra_step():
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 1000))
    calls = []

    def model(x, t):
        calls.append(int(t[0]))
        return torch.zeros_like(x)

    ddim_sample(diffusion, model, (1, 1, 2, 2), 7, skip="uniform_ddim", generator=torch.Generator().manual_seed(0))
    assert calls == list(range(994, -1, -142))


def test_a_uniform_rule_with_no_stride_is_refused_by_name():
    from helpers.params import make_params

    from ddpm.config import ParamsError

    with pytest.raises(ParamsError, match=r"ddim_table.skip: no integer stride gives exactly 600 of 1000 steps"):
        make_params({"ddim_table": {"steps": [10, 600], "skip": "uniform_iddpm"}})
