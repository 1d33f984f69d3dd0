"""Objects built from validated params: the diffusion process and the network."""

from __future__ import annotations

from .config import Params
from .diffusion import GaussianDiffusion, VarType
from .schedules import get_beta_schedule
from .unet import UNet, UNetConfig


def build_diffusion(params: Params) -> GaussianDiffusion:
    return GaussianDiffusion(
        get_beta_schedule(params.schedule.value, params.timesteps),
        mean_type=params.mean_type,
        var_type=params.variance,
        loss_type=params.objective,
        hybrid_lambda=params.hybrid_lambda,
    )


def unet_config(params: Params, channels: int) -> UNetConfig:
    m = params.model
    return UNetConfig(
        in_channels=channels,
        ch=m.ch,
        ch_mult=tuple(m.ch_mult),
        num_res_blocks=m.num_res_blocks,
        attn_resolutions=tuple(m.attn_resolutions),
        dropout=m.dropout,
        resolution=params.data.resolution,
        learn_sigma=params.variance in (VarType.LEARNED, VarType.LEARNED_RANGE),
        num_heads=m.num_heads,
        scale_shift_norm=m.scale_shift_norm,
        resblock_updown=m.resblock_updown,
    )


def build_model(params: Params, channels: int) -> UNet:
    return UNet(unet_config(params, channels))


def check_model_matches(params: Params, model: UNet, path) -> None:
    """A network trained for one variance type cannot serve another: its output channels differ."""
    wants = unet_config(params, model.config.in_channels).learn_sigma
    if wants != model.config.learn_sigma:
        outputs = "2C (mean and variance)" if model.config.learn_sigma else "C (mean only)"
        raise ValueError(
            f"variance: {params.variance.value!r} needs a network with {'2C' if wants else 'C'} outputs, "
            f"but {path} outputs {outputs}; retrain or set variance to match"
        )
