"""Params → objects: the network of a profile, and a trained model loaded for inference."""

import pytest
import torch
from helpers.params import make_params

from ddpm.factory import build_diffusion, build_model, load_for_inference
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
