"""Small networks, and a small network ready to sample."""

import torch

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.unet import UNet, UNetConfig

from .params import make_params


def small_unet(seed: int = 0, ch_mult=(1, 2), attn_resolutions=(4,), scale: float | None = 0.05, **config) -> UNet:
    """A small 8×8 grey-scale U-Net in eval mode; with ``scale``, weights drawn from N(0, scale²) (an untrained but
    non-trivial network: zero-initialised outputs would hide bugs)."""
    torch.manual_seed(seed)
    model = UNet(
        UNetConfig(
            **{
                "in_channels": 1,
                "ch": 32,
                "ch_mult": tuple(ch_mult),
                "attn_resolutions": tuple(attn_resolutions),
                "resolution": 8,
                "dropout": 0.0,
            }
            | config
        )
    )
    if scale is not None:
        for p in model.parameters():
            p.data.normal_(0, scale)
    return model.eval()


SAMPLE_SHAPE = (1, 8, 8)


def sampling_setup(sampler: str = "ddim", eta: float = 0.5):
    """A small untrained network ready to sample 10 images in chunks of 4 (batches of 3) over T = 50 steps."""
    from ddpm.core.schedules import get_beta_schedule
    from ddpm.factory import Inference

    cfg = make_params(
        {
            "timesteps": 50,
            "sample": {
                "num_samples": 10,
                "chunk_size": 4,
                "batch_size": 3,
                "sampler": sampler,
                "steps": 5 if sampler == "ddim" else None,
                "eta": eta,
            },
        }
    ).sample
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 50))
    return Inference(small_unet(), diffusion, SAMPLE_SHAPE, torch.device("cpu")), cfg
