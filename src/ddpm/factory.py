"""Objects built from validated params: the diffusion process, the network, and a trained model ready to sample."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from ddpm.config import Params
from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.options import InferencePrecision
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet, UNetConfig
from ddpm.device_defaults import concrete
from ddpm.precision import IEEE, TF32, set_fp32_precision
from ddpm.storage.model_files import load_model


def build_diffusion(params: Params) -> GaussianDiffusion:
    return GaussianDiffusion(
        get_beta_schedule(params.schedule, params.timesteps),
        mean_type=params.mean_type,
        var_type=params.variance,
        loss_type=params.objective,
        hybrid_lambda=params.hybrid_lambda,
        decoder_cdf=params.decoder_cdf,
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
        learn_sigma=params.variance.learned,
        num_heads=m.num_heads,
        scale_shift_norm=m.scale_shift_norm,
        resblock_updown=m.resblock_updown,
        norm_eps=m.norm_eps,
        downsample_padding=m.downsample_padding,
        time_embedding=m.time_embedding,
        time_scale=1000.0 / params.timesteps if m.rescale_timesteps else 1.0,
        qkv_layout=m.qkv_layout,
    )


def build_model(params: Params, channels: int) -> UNet:
    return UNet(unet_config(params, channels))


class AutocastModel(torch.nn.Module):
    """A network run under bf16 autocast whose outputs come back as float32 (for the diffusion math)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.net(x, t).float()


class OwnedOutput(torch.nn.Module):
    """A network whose every output is a tensor of the caller's own. A network compiled with CUDA graphs returns
    its graph's static output buffer, which the next call overwrites; the multistep and singlestep solvers (Heun,
    DPM-Solver-2/3, UniPC, DPM-Solver++) keep an earlier call's ε after a later call, so they must hold a copy."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t).clone()


class LargestBatch(torch.nn.Module):
    """A compiled network always called with the largest batch it has been given: a smaller batch (a split's or a
    sample run's last one) is padded with zero images at t = 0 and the output cut back, so the compiled code and
    its CUDA graph are reused rather than compiled again for each new batch size (``torch.compile`` falls back to
    eager after 8). Exact: the network treats each image on its own (GroupNorm, attention within an image)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.batch = net, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n >= self.batch:
            self.batch = n
            return self.net(x, t)
        x = torch.cat([x, x.new_zeros((self.batch - n, *x.shape[1:]))])
        t = torch.cat([t, t.new_zeros(self.batch - n)])
        return self.net(x, t)[:n]


def inference_network(
    model: torch.nn.Module, device: torch.device, precision: InferencePrecision, compile: bool | str
) -> torch.nn.Module:
    """The network as sampling and the bound call it: ``torch.compile``d if asked (on CUDA with CUDA graphs, for
    one batch size: smaller batches padded; its outputs copied out of the graph's buffers), under bf16 autocast
    (outputs converted to new float32 tensors) or in float32. ``auto`` (unresolved params: stages resolve them
    first) means what it means for sampling on this device."""
    precision = InferencePrecision(concrete("sample.precision", precision, device.type))
    compile = bool(concrete("sample.compile", compile, device.type))
    net = model
    if compile:
        mode = "reduce-overhead" if device.type == "cuda" else None
        net = LargestBatch(cast(torch.nn.Module, torch.compile(model, mode=mode, dynamic=False)))
    set_fp32_precision(TF32 if precision is InferencePrecision.TF32 else IEEE)  # what float32 means on a GPU
    if precision is InferencePrecision.BF16:
        return AutocastModel(net)  # .float() of a bf16 output is a new tensor
    return OwnedOutput(net) if compile else net


@dataclass(frozen=True)
class Inference:
    """A trained network in eval mode on its device (possibly compiled or under autocast), the diffusion process of
    the params, and the image shape."""

    model: torch.nn.Module
    diffusion: GaussianDiffusion
    shape: tuple[int, int, int]  # C×H×W
    device: torch.device


def load_for_inference(
    params: Params,
    path: Path,
    device: str | torch.device,
    *,
    precision: InferencePrecision = InferencePrecision.FP32,
    compile: bool | str = False,
) -> Inference:
    """Load the weights at ``path`` onto ``device`` and check that they fit ``params`` (a network trained for one
    variance type cannot serve another: its output channels differ). ``precision`` and ``compile``: see
    ``inference_network``."""
    device = torch.device(device)
    model = load_model(path, device)
    wants = params.variance.learned
    if wants != model.config.learn_sigma:
        outputs = "2C (mean and variance)" if model.config.learn_sigma else "C (mean only)"
        raise ValueError(
            f"variance: {params.variance.value!r} needs a network with {'2C' if wants else 'C'} outputs, "
            f"but {path} outputs {outputs}; retrain or set variance to match"
        )
    shape = (model.config.in_channels, params.data.resolution, params.data.resolution)
    return Inference(inference_network(model, device, precision, compile), build_diffusion(params), shape, device)
