"""Params → objects: the network of a profile, and a trained model loaded for inference."""

import pytest
import torch
from helpers.params import make_params

from ddpm.core.options import InferencePrecision, Sampler
from ddpm.factory import build_diffusion, build_model, inference_network, load_for_inference
from ddpm.storage.model_files import save_model


def test_load_for_inference_checks_the_variance_type_against_the_networks_outputs(tmp_path):
    base = {
        "dataset": "digits",
        "data": {"resolution": 8},
        "model": {"ch": 32, "ch_mult": [1, 2], "attn_resolutions": [4]},
    }
    eps_only, learned = make_params(base), make_params(base | {"variance": "learned_range", "objective": "hybrid"})
    save_model(build_model(eps_only, channels=1), tmp_path / "eps.safetensors")
    save_model(build_model(learned, channels=1), tmp_path / "learned.safetensors")
    mismatch = "variance: 'learned_range' needs a network with 2C outputs, but .*eps.safetensors outputs C"
    with pytest.raises(ValueError, match=mismatch):
        load_for_inference(learned, tmp_path / "eps.safetensors", "cpu")
    inference = load_for_inference(learned, tmp_path / "learned.safetensors", "cpu")
    assert inference.shape == (1, 8, 8) and inference.device == torch.device("cpu")
    assert not inference.model.training and inference.diffusion.var_type.value == "learned_range"
    assert inference.diffusion.num_timesteps == build_diffusion(learned).num_timesteps == 1000


def test_bf16_inference_wraps_the_network_in_autocast_with_float32_outputs(tmp_path):
    params = make_params(
        {
            "dataset": "digits",
            "data": {"resolution": 8},
            "model": {"ch": 32, "ch_mult": [1, 2], "attn_resolutions": [4]},
        }
    )
    model = build_model(params, channels=1)
    torch.manual_seed(0)
    with torch.no_grad():  # random weights: the output layer starts at zero
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    save_model(model, tmp_path / "m.safetensors")
    fp32 = load_for_inference(params, tmp_path / "m.safetensors", "cpu")
    bf16 = load_for_inference(params, tmp_path / "m.safetensors", "cpu", precision="bf16")
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([5, 900])
    with torch.no_grad():
        ref, out = fp32.model(x, t), bf16.model(x, t)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert 0 < (out - ref).abs().max() < 0.1 * ref.abs().max()  # bf16 keeps 8 mantissa bits: close, not equal


class _GraphBuffer(torch.nn.Module):
    """A stand-in for a network compiled with CUDA graphs: it returns one static buffer, overwritten by its next
    call (what `torch.compile(mode="reduce-overhead")` does on a GPU)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.buffer = net, None

    def forward(self, x, t):
        out = self.net(x, t)
        if self.buffer is None or self.buffer.shape != out.shape:
            self.buffer = torch.empty_like(out)
        return self.buffer.copy_(out)


@pytest.mark.parametrize("sampler", [s.value for s in Sampler])
def test_compiled_networks_outputs_are_never_aliased_for_any_sampler(monkeypatch, sampler):
    """Through the wrapper the stages use (``inference_network`` with compile on), every sampler gives what the
    plain network gives, although the compiled network overwrites its last output at each call."""
    from helpers.networks import small_unet

    from ddpm.core.diffusion import GaussianDiffusion
    from ddpm.core.generation import generate
    from ddpm.core.schedules import get_beta_schedule

    net = small_unet()
    monkeypatch.setattr(torch, "compile", lambda model, **kw: _GraphBuffer(model))
    compiled = inference_network(net, torch.device("cpu"), InferencePrecision.FP32, compile=True)
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 50))
    options = {"sampler": sampler, "steps": 6, "eta": 0.0}
    if sampler == "ancestral":
        options = {"sampler": sampler, "steps": 10}
    common = {"seed": 3, "start": 0, "count": 2, "batch_size": 2, "device": "cpu"}
    expected = generate(diffusion, net, (1, 8, 8), **common, **options)
    assert (generate(diffusion, compiled, (1, 8, 8), **common, **options) == expected).all()
    raw = _GraphBuffer(net)  # and the stand-in does alias: a solver that keeps an earlier ε reads the later one
    if sampler in {"heun", "dpm_solver_2", "dpm_solver_3"}:
        assert not (generate(diffusion, raw, (1, 8, 8), **common, **options) == expected).all()


def test_a_compiled_network_sees_one_batch_size_and_a_padded_batch_gives_the_same_images(monkeypatch):
    """The last, smaller batch of a sample run or a split is padded up to the largest batch so far (one compiled
    shape, one CUDA graph); the images it returns are the unpadded ones."""
    from helpers.networks import small_unet

    net = small_unet().eval()
    seen: list[int] = []

    class Recorder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, t):
            seen.append(x.shape[0])
            return self.model(x, t)

    monkeypatch.setattr(torch, "compile", lambda model, **kw: Recorder(model))
    compiled = inference_network(net, torch.device("cpu"), InferencePrecision.FP32, compile=True)
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 50, (8,), generator=gen)
    with torch.no_grad():
        compiled(x, t)
        out = compiled(x[:3], t[:3])
        alone = net(x[:3], t[:3])
    assert seen == [8, 8] and out.shape == alone.shape
    torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-5)  # another batch size may round differently
