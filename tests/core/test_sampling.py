"""σ̂ sampling, p(x0 | x_t), DDIM reconstruction error, interpolation, respaced learned-variance sampling."""

import numpy as np
import pytest
import torch

from ddpm.core.diffusion import GaussianDiffusion, standard_normal
from ddpm.core.gaussian import MU, S, gaussian_eps_model
from ddpm.core.respace import SpacedDiffusion
from ddpm.core.sampling import (
    ancestral_sample,
    ancestral_sample_from,
    ddim_reconstruction_error,
    ddim_sample,
    ddim_timesteps,
)
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.spacing import space_timesteps
from ddpm.evaluation.interpolation import ddim_interpolate, ddpm_interpolate, slerp


def test_sigma_hat_is_ancestral_sampling_of_the_respaced_process_with_beta_variance(linear100):
    model = gaussian_eps_model(linear100)
    x_T = torch.randn(4, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = ddim_sample(
        linear100,
        model,
        x_T.shape,
        10,
        eta="sigma_hat",
        noise=x_T,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(1),
    )
    large = GaussianDiffusion(linear100.betas, var_type="fixed_large")
    spaced = SpacedDiffusion(large, ddim_timesteps(100, 10))
    b = ancestral_sample(
        spaced, model, x_T.shape, noise=x_T, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="eta: must be a number in \\[0, 1\\] or 'sigma_hat' \\(got 'big'\\)"):
        ddim_sample(linear100, model, x_T.shape, 10, eta="big")


def test_ddim_quadratic_subsequence_matches_appendix_d():
    seq = ddim_timesteps(1000, 10, "quad")
    assert seq[0] == 0 and seq[-1] == 800 and len(set(seq)) == 10
    assert np.all(np.diff(np.diff(seq)) >= 0)  # quadratic: ever larger gaps


def _posterior_mean(diffusion, t, x_t=0.0):
    """E[x0 | x_t] for x0 ~ N(MU, S²): MU + S² √ᾱ (x_t − √ᾱ MU) / (ᾱ S² + 1 − ᾱ)."""
    abar = diffusion.alphas_cumprod[t]
    return MU + S * S * np.sqrt(abar) * (x_t - np.sqrt(abar) * MU) / (abar * S * S + 1 - abar)


def test_stochastic_reconstructions_share_x_t_and_differ_in_x0(linear100):
    model = gaussian_eps_model(linear100)
    x_t = torch.zeros(64, 1, 2, 2, dtype=torch.float64)
    x0 = ancestral_sample_from(
        linear100, model, x_t, [50] * 64, clip_denoised=False, generator=torch.Generator().manual_seed(0)
    )
    assert x0.std(0).mean() > 0.01  # different samples of p(x0 | x_50)
    # and they concentrate around E[x0 | x_50 = 0], shrinking towards μ
    assert x0.mean().item() == pytest.approx(_posterior_mean(linear100, 50), abs=0.03)


def test_rows_from_several_steps_decode_in_one_chain(linear100):
    """Rows joining the chain at their own t sample their own p(x0 | x_t); with one t for all rows the chain is
    DDPM Algorithm 2 with the same noise draws."""
    calls = []

    def model(x, t):
        calls.append(x.shape[0])
        return gaussian_eps_model(linear100)(x, t)

    x_t = torch.zeros(256, 1, 2, 2, dtype=torch.float64)
    x0 = ancestral_sample_from(
        linear100, model, x_t, [5] * 128 + [60] * 128, clip_denoised=False, generator=torch.Generator().manual_seed(0)
    )
    assert calls == [128] * 55 + [256] * 6  # steps 60 … 6 on the rows from 60, then all rows
    for rows, t in ((x0[:128], 5), (x0[128:], 60)):
        assert rows.mean().item() == pytest.approx(_posterior_mean(linear100, t), abs=0.03)
    assert x0[:128].std() < x0[128:].std()  # p(x0 | x_5) is narrower than p(x0 | x_60)

    x_T = torch.randn(4, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        ancestral_sample_from(linear100, model, x_T, [99] * 4, generator=torch.Generator().manual_seed(3)),
        ancestral_sample(linear100, model, x_T.shape, noise=x_T, generator=torch.Generator().manual_seed(3)),
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="t_start: one step per row expected, got 3 for 4 rows"):
        ancestral_sample_from(linear100, model, x_T, [1, 2, 3])
    with pytest.raises(ValueError, match=r"t_start: must be in 0..99, got \[0, 1, 2, 100\]"):
        ancestral_sample_from(linear100, model, x_T, [0, 1, 2, 100])


def test_ddim_reconstruction_error_falls_with_more_steps():
    d = GaussianDiffusion(get_beta_schedule("linear", 1000))
    x0 = MU + S * torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = [ddim_reconstruction_error(d, gaussian_eps_model(d), x0, steps).mean().item() for steps in (10, 100, 1000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-5


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    torch.testing.assert_close(slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(slerp(z0, z1, 1.0), z1, rtol=1e-4, atol=1e-5)
    e0, e1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(slerp(e0, e1, 0.5), torch.tensor([[2**-0.5, 2**-0.5]]))  # stays on the circle


def test_interpolations_have_the_right_shape_and_endpoints(linear100):
    model = gaussian_eps_model(linear100)
    g = torch.Generator().manual_seed(0)
    x_T0, x_T1 = (torch.randn(2, 1, 2, 2, generator=g, dtype=torch.float64) for _ in range(2))
    frames = ddim_interpolate(linear100, model, x_T0, x_T1, [0.0, 0.5, 1.0], steps=10)
    assert frames.shape == (3, 2, 1, 2, 2)
    torch.testing.assert_close(
        frames[0], ddim_sample(linear100, model, x_T0.shape, 10, noise=x_T0, dtype=torch.float64)
    )
    a, b = torch.full((2, 1, 2, 2), -0.5, dtype=torch.float64), torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    mix = ddpm_interpolate(linear100, model, a, b, steps=[5, 80], lambdas=[0.0, 0.5, 1.0], generator=g)
    assert mix.shape == (2, 3, 2, 1, 2, 2)
    assert mix[0, 0].mean() < mix[0, 1].mean() < mix[0, 2].mean()  # small t keeps each end near its source image
    ends = (mix[:, 2] - mix[:, 0]).mean(dim=(1, 2, 3, 4))
    assert ends[0] > ends[1]  # larger t forgets more of the sources


def test_respaced_ancestral_sampling_with_learned_range_variance():
    d = GaussianDiffusion(get_beta_schedule("cosine", 200), var_type="learned_range", loss_type="hybrid")
    base = gaussian_eps_model(d)

    def model(x, t):  # v = ½ everywhere: halfway between β and β̃ in log space
        return torch.cat([base(x, t), torch.zeros_like(x)], 1)

    spaced = SpacedDiffusion(d, space_timesteps(200, "5,5"))
    x = ancestral_sample(
        spaced,
        model,
        (16, 1, 2, 2),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
        clip_denoised=False,
    )
    assert torch.isfinite(x).all() and x.mean().item() == pytest.approx(MU, abs=0.15)


def test_noise_is_drawn_where_the_generator_lives_and_placed_on_the_device():
    """A CPU generator gives the same numbers whatever device computes with them (here the meta device)."""
    cpu = standard_normal((2, 3), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(cpu, torch.randn((2, 3), generator=torch.Generator().manual_seed(4)), rtol=0, atol=0)
    moved = standard_normal((2, 3), generator=torch.Generator().manual_seed(4), device="meta")
    assert moved.device.type == "meta" and moved.shape == (2, 3)


def test_noise_drawn_ahead_on_a_helper_thread_has_the_bytes_of_noise_drawn_inline():
    """Each image's noise comes from its own CPU generator in call order, whether it is drawn when asked (CPU) or
    drawn ahead into pinned memory while the accelerator works (CUDA's default), so samples are the same bytes."""
    from ddpm.core.generation import image_seed, per_image_noise

    generators = [torch.Generator().manual_seed(image_seed(5, i)) for i in range(10, 17)]
    expected = [torch.stack([torch.randn(3, 8, 8, generator=g) for g in generators]) for _ in range(4)]
    for ahead, threads in ((False, None), (True, 1), (True, 3), (True, 16)):  # rows side by side on 3 threads
        draw = per_image_noise(5, range(10, 17), (3, 8, 8), "cpu", ahead=ahead, threads=threads)
        assert all(torch.equal(draw(), e) for e in expected), (ahead, threads)
