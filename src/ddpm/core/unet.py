"""The DDPM U-Net (Ho et al. 2020, Appendix B) with the iDDPM options (Nichol & Dhariwal 2021, §3 and App. A).

Defaults reproduce DDPM's CIFAR10 network as its TensorFlow code built it: ch=128, ch_mult=(1, 2, 2, 2), 2 residual
blocks per level, self-attention at 16×16, dropout 0.1, GroupNorm(32, ε=1e-6), 'SAME'-padded stride-2
downsampling, the [sin, cos] embedding of the integer timestep: 35.7M parameters. The conventions where the two
codebases differ are options, so that the released weights of either run unchanged (``ddpm.importers``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .options import Embedding, OptionError, Padding, QKVLayout, check_unet_geometry


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resolution: int = 32
    learn_sigma: bool = False  # iDDPM: 2C output channels (mean and variance interpolation v)
    num_heads: int = 1  # iDDPM: multi-head attention
    scale_shift_norm: bool = False  # iDDPM: adaptive GroupNorm, h = GN(h)(1 + s) + b
    resblock_updown: bool = False  # BigGAN-style residual up/down-sampling blocks
    num_groups: int = 32
    norm_eps: float = 1e-6  # GroupNorm ε: 1e-6 DDPM, 1e-5 iDDPM
    downsample_padding: Padding = Padding.SAME
    time_embedding: Embedding = Embedding.DDPM
    time_scale: float = 1.0  # the network sees t · time_scale: 1 (DDPM), 1000 / T (iDDPM's rescale_timesteps)
    qkv_layout: QKVLayout = QKVLayout.QKV

    def __post_init__(self) -> None:
        for name, enum in (("downsample_padding", Padding), ("time_embedding", Embedding), ("qkv_layout", QKVLayout)):
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                allowed = ", ".join(m.value for m in enum)
                raise ValueError(f"model.{name}: unknown value {getattr(self, name)!r}; allowed: {allowed}") from None
        if not (self.norm_eps > 0 and self.time_scale > 0):
            raise ValueError(f"model: norm_eps and time_scale must be > 0, got {self.norm_eps}, {self.time_scale}")
        for name in ("in_channels", "ch", "num_res_blocks", "resolution", "num_heads", "num_groups"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if not self.ch_mult or any(m < 1 for m in self.ch_mult):
            raise ValueError(f"model.ch_mult: must be a non-empty list of positive integers, got {list(self.ch_mult)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout: must be in [0, 1), got {self.dropout}")
        try:
            check_unet_geometry(
                self.ch, self.ch_mult, self.resolution, self.attn_resolutions, self.num_heads, self.num_groups
            )
        except OptionError as err:
            raise ValueError(f"model.{err}") from None

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)


def timestep_embedding(t: torch.Tensor, dim: int, kind: Embedding = Embedding.DDPM) -> torch.Tensor:
    """The Transformer's sinusoidal embedding of the timesteps as DDPM (App. B) or iDDPM wrote it (``Embedding``),
    with each codebase's order of float32 operations."""
    half = dim // 2
    i = torch.arange(half, device=t.device, dtype=torch.float32)
    if kind is Embedding.DDPM:
        freqs = torch.exp(i * -(math.log(10000.0) / (half - 1)))
    else:
        freqs = torch.exp(-math.log(10000.0) * i / half)
    args = t.float()[:, None] * freqs[None]
    parts = [torch.sin(args), torch.cos(args)] if kind is Embedding.DDPM else [torch.cos(args), torch.sin(args)]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


M = TypeVar("M", bound=nn.Module)


def _zero(module: M) -> M:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Downsample(nn.Module):
    def __init__(self, channels: int, padding: Padding):
        super().__init__()
        self.same = padding is Padding.SAME
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0 if self.same else 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.conv(F.pad(x, (0, 1, 0, 1)) if self.same else x)
        return out


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return out


class ResBlock(nn.Module):
    """GN → SiLU → conv → (+ time) → GN → SiLU → dropout → conv, with a 1×1 shortcut when widths differ."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        temb_dim: int,
        dropout: float,
        num_groups: int,
        eps: float,
        scale_shift_norm: bool = False,
        resample: str | None = None,
    ):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, c_in, eps=eps)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.scale_shift_norm = scale_shift_norm
        self.temb_proj = nn.Linear(temb_dim, c_out * (2 if scale_shift_norm else 1))
        self.norm2 = nn.GroupNorm(num_groups, c_out, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.resample = resample  # "up" | "down" | None (BigGAN-style residual resampling)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(x))
        h = self.conv1(self._resample(h))
        x = self._resample(x)
        emb = self.temb_proj(F.silu(temb))[:, :, None, None]
        if self.scale_shift_norm:
            scale, shift = emb.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + emb)
        h = self.conv2(self.dropout(F.silu(h)))
        out: torch.Tensor = self.shortcut(x) + h
        return out


class AttnBlock(nn.Module):
    """Self-attention over spatial positions (DDPM App. B), multi-head as in iDDPM; SDPA kernel."""

    def __init__(self, channels: int, num_heads: int, num_groups: int, eps: float, layout: QKVLayout = QKVLayout.QKV):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"model.num_heads: {num_heads} does not divide the attention width {channels}")
        self.num_heads = num_heads
        self.heads_first = layout is QKVLayout.HEADS
        self.norm = nn.GroupNorm(num_groups, channels, eps=eps)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        d = c // self.num_heads
        # Tokens-last layout: the 1×1 convolutions as matmuls, and q, k, v as strided views SDPA's fused CPU and
        # GPU kernels take directly (no transposed copies). Same parameters and result as the 1×1 convolutions.
        h = self.norm(x).reshape(b, c, hgt * wid).transpose(1, 2)  # (b, hw, c)
        qkv = F.linear(h, self.qkv.weight.view(3 * c, c), self.qkv.bias)  # (b, hw, 3c)
        if self.heads_first:  # channels as (heads, 3, d)
            q, k, v = qkv.view(b, hgt * wid, self.num_heads, 3, d).permute(3, 0, 2, 1, 4)  # each (b, heads, hw, d)
        else:  # channels as (3, heads, d)
            q, k, v = qkv.view(b, hgt * wid, 3, self.num_heads, d).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, hgt * wid, c)
        h = F.linear(h, self.proj.weight.view(c, c), self.proj.bias)
        return x + h.transpose(1, 2).reshape(b, c, hgt, wid)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        ch, groups = cfg.ch, cfg.num_groups
        temb_dim = 4 * ch
        self.temb = nn.Sequential(nn.Linear(ch, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))

        def res(c_in: int, c_out: int, resample: str | None = None) -> ResBlock:
            return ResBlock(c_in, c_out, temb_dim, cfg.dropout, groups, cfg.norm_eps, cfg.scale_shift_norm, resample)

        def attn(c: int) -> AttnBlock:
            return AttnBlock(c, cfg.num_heads, groups, cfg.norm_eps, cfg.qkv_layout)

        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, c, resolution = [ch], ch, cfg.resolution
        for level, mult in enumerate(cfg.ch_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(c, ch * mult)]
                c = ch * mult
                if resolution in cfg.attn_resolutions:
                    layers.append(attn(c))
                self.down.append(nn.ModuleList(layers))
                skips.append(c)
            if level != len(cfg.ch_mult) - 1:
                down = res(c, c, "down") if cfg.resblock_updown else Downsample(c, cfg.downsample_padding)
                self.down.append(nn.ModuleList([down]))
                skips.append(c)
                resolution //= 2
        self.mid = nn.ModuleList([res(c, c), attn(c), res(c, c)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.ch_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(c + skips.pop(), ch * mult)]
                c = ch * mult
                if resolution in cfg.attn_resolutions:
                    layers.append(attn(c))
                if level != 0 and i == cfg.num_res_blocks:
                    layers.append(res(c, c, "up") if cfg.resblock_updown else Upsample(c))
                    resolution *= 2
                self.up.append(nn.ModuleList(layers))
        self.norm_out = nn.GroupNorm(groups, c, eps=cfg.norm_eps)
        self.conv_out = _zero(nn.Conv2d(c, cfg.out_channels, 3, padding=1))
        # Activation checkpointing (a training option, not architecture): recompute each block in backward.
        self.gradient_checkpointing = False

    def _run(self, layers: nn.Module, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for layer in cast(nn.ModuleList, layers):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(layer, h, temb, use_reentrant=False)
            else:
                h = layer(h, temb)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        t = t.float() * cfg.time_scale if cfg.time_scale != 1.0 else t
        with torch.autocast(x.device.type, enabled=False):  # the time embedding in the weights' precision, as iDDPM
            temb = self.temb(timestep_embedding(t, cfg.ch, cfg.time_embedding).to(next(self.temb.parameters()).dtype))
        hs = [self.conv_in(x)]
        for layers in self.down:
            hs.append(self._run(layers, hs[-1], temb))
        h = self._run(self.mid, hs[-1], temb)
        for layers in self.up:
            h = self._run(layers, torch.cat([h, hs.pop()], dim=1), temb)
        out: torch.Tensor = self.conv_out(F.silu(self.norm_out(h)))
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
