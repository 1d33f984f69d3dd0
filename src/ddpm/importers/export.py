"""The way out to diffusers: a trained U-Net and its params as a diffusers ``DDPMPipeline`` folder
(``model_index.json``, ``unet/`` with ``config.json`` and ``diffusion_pytorch_model.safetensors``, ``scheduler/``),
the inverse of the diffusers import (``layouts``): the same parameter map read the other way, the config.json keys
``diffusers_conventions`` reads, and a ``DDPMScheduler`` config that ``released.check_scheduler`` accepts. Networks or
processes that diffusers' ``UNet2DModel`` or ``DDPMScheduler`` cannot represent are refused by the key that says so,
before anything is written."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from ddpm.config import Params
from ddpm.core.options import Embedding, MeanType, Padding, QKVLayout, VarType
from ddpm.core.schedules import Schedule
from ddpm.core.unet import UNet, UNetConfig

from .layouts import DIFFUSERS_ATTENTION, CheckpointError, Layout, sources

# What diffusers' DDPMScheduler calls the project's options.
_PREDICTION = {MeanType.EPSILON: "epsilon", MeanType.START_X: "sample", MeanType.VELOCITY: "v_prediction"}
_VARIANCE = {
    VarType.FIXED_SMALL: "fixed_small",
    VarType.FIXED_LARGE: "fixed_large",
    VarType.LEARNED: "learned",
    VarType.LEARNED_RANGE: "learned_range",
}


def _refuse(key: str, value: object, why: str) -> CheckpointError:
    return CheckpointError(f"{key}: {value!r} cannot be exported to diffusers ({why})")


def unet_config(cfg: UNetConfig) -> dict:
    """diffusers' ``UNet2DModel`` config for the network ``cfg``; an option diffusers does not build is refused."""
    unsupported = {
        "model.scale_shift_norm": (cfg.scale_shift_norm, False, "its ResNet blocks add the time embedding"),
        "model.resblock_updown": (cfg.resblock_updown, False, "it resamples with convolutions"),
        "model.rescale_timesteps": (cfg.time_scale != 1.0, False, "it feeds the network t itself"),
        "model.qkv_layout": (cfg.qkv_layout, QKVLayout.QKV, "its attention projects q, k and v separately"),
    }
    for key, (value, supported, why) in unsupported.items():
        if value != supported:
            raise _refuse(key, getattr(value, "value", value), why)
    widths = [cfg.ch * m for m in cfg.ch_mult]
    attention = [cfg.resolution // 2**level in cfg.attn_resolutions for level in range(len(widths))]
    attended = [w for w, a in zip(widths, attention, strict=True) if a] + [widths[-1]]  # and the middle block
    if any(w % cfg.num_heads for w in attended):
        raise _refuse("model.num_heads", cfg.num_heads, f"it does not divide the attention widths {attended}")
    head_dims = {w // cfg.num_heads for w in attended}
    if cfg.num_heads > 1 and len(head_dims) > 1:
        raise _refuse("model.num_heads", cfg.num_heads, f"diffusers gives every attention block one head width, "
                      f"these widths {sorted(set(attended))} would need {sorted(head_dims)}")  # fmt: skip
    return {
        "_class_name": "UNet2DModel",
        "sample_size": cfg.resolution,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.in_channels * (2 if cfg.learn_sigma else 1),
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "flip_sin_to_cos": cfg.time_embedding is Embedding.IDDPM,
        "freq_shift": 0 if cfg.time_embedding is Embedding.IDDPM else 1,
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "block_out_channels": widths,
        "layers_per_block": cfg.num_res_blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": {Padding.SAME: 0, Padding.SYMMETRIC: 1}[cfg.downsample_padding],
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": cfg.dropout,
        "act_fn": "silu",
        "attention_head_dim": head_dims.pop() if cfg.num_heads > 1 else None,
        "norm_num_groups": cfg.num_groups,
        "norm_eps": cfg.norm_eps,
        "resnet_time_scale_shift": "default",
        "add_attention": True,
    }


def scheduler_config(params: Params) -> dict:
    """diffusers' ``DDPMScheduler`` config of the params' diffusion: T, the β schedule (linear: DDPM's ends, scaled
    by 1000 / T as ``linear_betas`` does), what the network predicts, the sampling variance, x̂0 clipping."""
    if params.mean_type not in _PREDICTION:
        raise _refuse("mean_type", params.mean_type.value, "DDPMScheduler predicts ε, x0 or v")
    scale = 1000.0 / params.timesteps
    linear = params.schedule is Schedule.LINEAR
    return {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": params.timesteps,
        "beta_schedule": "linear" if linear else "squaredcos_cap_v2",
        "beta_start": scale * 1e-4 if linear else 1e-4,
        "beta_end": scale * 0.02 if linear else 0.02,
        "prediction_type": _PREDICTION[params.mean_type],
        "variance_type": _VARIANCE[params.variance],
        "clip_sample": params.sample.clip_denoised is not False,
        "clip_sample_range": 1.0,
    }


def diffusers_state(model: UNet, config: dict) -> dict[str, torch.Tensor]:
    """The network's weights under diffusers' names and shapes (``layouts.sources`` read backwards: each project
    parameter becomes its diffusers tensor, the stacked q, k, v split in three)."""
    from diffusers import UNet2DModel

    with torch.device("meta"):
        wanted = {k: v.shape for k, v in UNet2DModel.from_config(config).state_dict().items()}
    ours = model.state_dict()
    plan = sources(Layout.DIFFUSERS, model.config, DIFFUSERS_ATTENTION[1])
    out: dict[str, torch.Tensor] = {}
    for key, tensor in ours.items():
        names = plan[key][0]
        parts = tensor.detach().float().cpu().reshape(len(names), -1).chunk(len(names)) if len(names) > 1 else [tensor]
        for name, part in zip(names, parts, strict=True):
            out[name] = part.detach().float().cpu().reshape(wanted[name]).contiguous()
    missing = sorted(set(wanted) - set(out))
    if missing:  # the map is the importer's: a gap is a bug here, not in the model
        raise AssertionError(f"diffusers parameters without a source: {missing[:4]}")
    return out


def export_diffusers(model: UNet, params: Params, out: Path) -> Path:
    """Write ``out`` as a diffusers ``DDPMPipeline`` folder (``save_pretrained``), whole or not at all: written
    beside it, then renamed; an existing folder is refused."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; name a new folder")
    unet_cfg, sched_cfg = unet_config(model.config), scheduler_config(params)
    unet = UNet2DModel.from_config(unet_cfg)
    unet.load_state_dict(diffusers_state(model, unet_cfg), strict=True)
    scheduler = DDPMScheduler.from_config(sched_cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pipeline = DDPMPipeline(unet=unet.eval(), scheduler=scheduler)
        pipeline.save_pretrained(str(tmp), safe_serialization=True)  # type: ignore[attr-defined]  # DiffusionPipeline
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
