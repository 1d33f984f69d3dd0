"""The way out to diffusers: a model exported as a DDPMPipeline folder loads with diffusers' own from_pretrained and
computes what the project's network computes, its scheduler has the project's ᾱ, and the project's importer reads
the folder back to the same weights."""

import numpy as np
import pytest
import torch
from helpers.params import make_params

from ddpm.core.options import MeanType
from ddpm.factory import build_diffusion, build_model
from ddpm.importers import CheckpointError, import_checkpoint
from ddpm.importers.export import export_diffusers
from ddpm.importers.released import check_scheduler

diffusers = pytest.importorskip("diffusers")

SMALL = {"data": {"resolution": 16}, "model": {"ch": 32, "ch_mult": [1, 2], "attn_resolutions": [8], "dropout": 0.0}}
DDPM = {**SMALL, "timesteps": 100}  # DDPM's conventions (the default profile's): one head, TF padding, ε, σ² = β
IDDPM = {  # iDDPM's: sinusoid flipped, symmetric padding, 4 heads, cosine, learned range (2C outputs), x0 prediction
    **SMALL,
    "timesteps": 200,
    "schedule": "cosine",
    "variance": "learned_range",
    "mean_type": "x0",
    "objective": "hybrid",
    "model": {
        **SMALL["model"],
        "num_heads": 4,
        "time_embedding": "iddpm",
        "downsample_padding": "symmetric",
        "norm_eps": 1e-5,
    },
}


def _network(patch: dict, channels: int):
    params = make_params(patch)
    torch.manual_seed(0)
    model = build_model(params, channels).eval()
    with torch.no_grad():  # random weights everywhere (zero-initialised output layers included)
        for p in model.parameters():
            p.normal_(0, 0.05)
    return params, model


@pytest.mark.parametrize(("patch", "channels"), [(DDPM, 1), (IDDPM, 3)], ids=["ddpm", "iddpm"])
def test_an_export_is_diffusers_own_model_and_reads_back_to_the_same_weights(patch, channels, tmp_path):
    params, model = _network(patch, channels)
    out = export_diffusers(model, params, tmp_path / "pipeline")
    assert {p.name for p in out.iterdir()} == {"model_index.json", "unet", "scheduler"}
    unet = diffusers.UNet2DModel.from_pretrained(str(out / "unet")).eval()
    x = torch.randn(2, channels, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([3, params.timesteps - 1])
    with torch.no_grad():
        assert (unet(x, t).sample - model(x, t)).abs().max() <= 1e-5
    scheduler = diffusers.DDPMScheduler.from_pretrained(str(out / "scheduler"))
    ours = build_diffusion(params).alphas_cumprod
    assert np.allclose(scheduler.alphas_cumprod.double().numpy(), ours, rtol=1e-5, atol=1e-7)
    assert scheduler.config.variance_type == params.variance.value
    back = import_checkpoint(out, model.config, "diffusers")
    assert all(torch.equal(back.model.state_dict()[k], v) for k, v in model.state_dict().items())
    assert check_scheduler(back.scheduler, params, str(out)) == []  # T, β schedule and variance as the params


def test_what_diffusers_cannot_build_is_refused_by_its_key_before_anything_is_written(tmp_path):
    params, model = _network({**SMALL, "model": {**SMALL["model"], "scale_shift_norm": True}}, 1)
    with pytest.raises(CheckpointError, match=r"^model.scale_shift_norm: True cannot be exported to diffusers \("):
        export_diffusers(model, params, tmp_path / "pipeline")
    params, model = _network(DDPM, 1)
    with pytest.raises(CheckpointError, match=r"^mean_type: 'mu' cannot be exported to diffusers"):
        export_diffusers(model, params.model_copy(update={"mean_type": MeanType.PREVIOUS_X}), tmp_path / "pipeline")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="taken: already exists; name a new folder"):
        export_diffusers(model, params, tmp_path / "taken")
