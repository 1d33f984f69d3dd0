"""The state-dict layouts of the released checkpoints, mapped onto the project's U-Net (``ddpm.core.unet``).

Each layout names the same blocks differently; the mapping walks the project's network in construction order and
asks the layout for the source name of every parameter, so the check is strict both ways: a parameter the network
needs and the file lacks is "missing", a tensor of the file that no parameter takes is "unknown".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum

import torch

from ddpm.core.options import Embedding, Padding, QKVLayout
from ddpm.core.unet import UNet, UNetConfig


class Layout(StrEnum):
    DDPM = "ddpm"  # ermongroup/ddim's Model: the PyTorch port of DDPM's TensorFlow U-Net (*.ckpt)
    IDDPM = "iddpm"  # openai/improved-diffusion's UNetModel (*.pt)
    DIFFUSERS = "diffusers"  # diffusers' UNet2DModel (config.json + diffusion_pytorch_model.{safetensors,bin})


class CheckpointError(ValueError):
    """A checkpoint that does not fit the profile's network, in one line naming the file and the keys."""


# A key of the layout that identifies it (the time-embedding MLP's first layer).
SIGNATURES = {
    Layout.DDPM: "temb.dense.0.weight",
    Layout.IDDPM: "time_embed.0.weight",
    Layout.DIFFUSERS: "time_embedding.linear_1.weight",
}

# The conventions each codebase trained with (its U-Net options), checked against the profile on import.
CONVENTIONS = {
    Layout.DDPM: {
        "norm_eps": 1e-6,
        "downsample_padding": Padding.SAME,
        "time_embedding": Embedding.DDPM,
        "time_scale": 1.0,
        "num_heads": 1,
        "scale_shift_norm": False,
        "resblock_updown": False,
    },
    Layout.IDDPM: {
        "norm_eps": 1e-5,
        "downsample_padding": Padding.SYMMETRIC,
        "time_embedding": Embedding.IDDPM,
        "qkv_layout": QKVLayout.HEADS,
        "resblock_updown": False,
    },
    # The rest is read from the folder's config.json (``diffusers_conventions``).
    Layout.DIFFUSERS: {
        "time_scale": 1.0,
        "scale_shift_norm": False,
        "resblock_updown": False,
        "qkv_layout": QKVLayout.QKV,
    },
}

RES_PARTS = {  # the project's ResBlock parameters → each layout's names
    Layout.DDPM: {
        "norm1": "norm1",
        "conv1": "conv1",
        "temb_proj": "temb_proj",
        "norm2": "norm2",
        "conv2": "conv2",
        "shortcut": "nin_shortcut",
    },
    Layout.IDDPM: {
        "norm1": "in_layers.0",
        "conv1": "in_layers.2",
        "temb_proj": "emb_layers.1",
        "norm2": "out_layers.0",
        "conv2": "out_layers.3",
        "shortcut": "skip_connection",
    },
    Layout.DIFFUSERS: {
        "norm1": "norm1",
        "conv1": "conv1",
        "temb_proj": "time_emb_proj",
        "norm2": "norm2",
        "conv2": "conv2",
        "shortcut": "conv_shortcut",
    },
}
FIXED = {  # the blocks outside the levels
    Layout.DDPM: {
        "conv_in": "conv_in",
        "temb.0": "temb.dense.0",
        "temb.2": "temb.dense.1",
        "norm_out": "norm_out",
        "conv_out": "conv_out",
    },
    Layout.IDDPM: {
        "conv_in": "input_blocks.0.0",
        "temb.0": "time_embed.0",
        "temb.2": "time_embed.2",
        "norm_out": "out.0",
        "conv_out": "out.2",
    },
    Layout.DIFFUSERS: {
        "conv_in": "conv_in",
        "temb.0": "time_embedding.linear_1",
        "temb.2": "time_embedding.linear_2",
        "norm_out": "conv_norm_out",
        "conv_out": "conv_out",
    },
}
# diffusers' attention before 0.14 (the google/ddpm-* uploads) and after.
DIFFUSERS_ATTENTION = (
    {"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj": "proj_attn"},
    {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj": "to_out.0"},
)


def blocks(cfg: UNetConfig) -> Iterator[tuple[str, str, int, int]]:
    """(project prefix, kind, level, index within the level) for every block, in ``UNet``'s construction order."""
    levels = len(cfg.ch_mult)
    resolution, flat = cfg.resolution, 0
    for level in range(levels):
        for j in range(cfg.num_res_blocks):
            yield f"down.{flat}.0", "res_down", level, j
            if resolution in cfg.attn_resolutions:
                yield f"down.{flat}.1", "attn_down", level, j
            flat += 1
        if level != levels - 1:
            yield f"down.{flat}.0", "downsample", level, flat
            flat, resolution = flat + 1, resolution // 2
    yield "mid.0", "res_mid", 0, 0
    yield "mid.1", "attn_mid", 0, 0
    yield "mid.2", "res_mid", 0, 1
    flat = 0
    for level in reversed(range(levels)):
        for j in range(cfg.num_res_blocks + 1):
            yield f"up.{flat}.0", "res_up", level, j
            position = 1
            if resolution in cfg.attn_resolutions:
                yield f"up.{flat}.1", "attn_up", level, j
                position = 2
            if level != 0 and j == cfg.num_res_blocks:
                yield f"up.{flat}.{position}", "upsample", level, flat
                resolution *= 2
            flat += 1


# Each layout's name of a block of kind ``kind`` at ``level`` (``rev``: the level counted from the bottom, as diffusers
# numbers its up blocks), index ``j`` within it. iDDPM numbers its blocks as the project does: ``_iddpm_prefix``.
BLOCK_NAMES = {
    Layout.DDPM: {
        "res_down": "down.{level}.block.{j}",
        "attn_down": "down.{level}.attn.{j}",
        "downsample": "down.{level}.downsample",
        "res_mid": "mid.block_{j1}",
        "attn_mid": "mid.attn_1",
        "res_up": "up.{level}.block.{j}",
        "attn_up": "up.{level}.attn.{j}",
        "upsample": "up.{level}.upsample",
    },
    Layout.DIFFUSERS: {
        "res_down": "down_blocks.{level}.resnets.{j}",
        "attn_down": "down_blocks.{level}.attentions.{j}",
        "downsample": "down_blocks.{level}.downsamplers.0",
        "res_mid": "mid_block.resnets.{j}",
        "attn_mid": "mid_block.attentions.0",
        "res_up": "up_blocks.{rev}.resnets.{j}",
        "attn_up": "up_blocks.{rev}.attentions.{j}",
        "upsample": "up_blocks.{rev}.upsamplers.0",
    },
}


def _iddpm_prefix(our_prefix: str) -> str:
    if our_prefix.startswith("mid."):
        return f"middle_block.{our_prefix.removeprefix('mid.')}"
    part, flat, index = our_prefix.split(".")
    return f"{'input_blocks' if part == 'down' else 'output_blocks'}.{int(flat) + (part == 'down')}.{index}"


def _conv(weight: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A 1×1 conv1d or linear weight as the project's 1×1 conv2d (same numbers)."""
    return weight.reshape(shape) if weight.numel() == shape.numel() else weight


Source = tuple[list[str], Callable[[list[torch.Tensor], torch.Size], torch.Tensor]]


def _as_is(tensors, shape):
    return _conv(tensors[0], shape)


def _stacked(tensors, shape):
    return _conv(torch.cat([t.reshape(t.shape[0], -1) for t in tensors]), shape)


def sources(layout: Layout, cfg: UNetConfig, attention: dict | None = None) -> dict[str, Source]:
    """For every parameter of the project's network: the layout's key(s) and how they become the parameter."""
    fixed = FIXED[layout]
    out: dict[str, Source] = {}
    for ours, theirs in fixed.items():
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = ([f"{theirs}.{p}"], _as_is)
    levels = len(cfg.ch_mult)
    for prefix, kind, level, j in blocks(cfg):
        base = (
            _iddpm_prefix(prefix)
            if layout is Layout.IDDPM
            else BLOCK_NAMES[layout][kind].format(level=level, rev=levels - 1 - level, j=j, j1=j + 1)
        )
        for p in ("weight", "bias"):
            if kind in ("downsample", "upsample"):
                conv = f"{base}.op" if layout is Layout.IDDPM and kind == "downsample" else f"{base}.conv"
                out[f"{prefix}.conv.{p}"] = ([f"{conv}.{p}"], _as_is)
            elif kind.startswith("res"):
                for ours, theirs in RES_PARTS[layout].items():
                    out[f"{prefix}.{ours}.{p}"] = ([f"{base}.{theirs}.{p}"], _as_is)
            elif layout is Layout.IDDPM:
                for ours in ("norm", "qkv"):
                    out[f"{prefix}.{ours}.{p}"] = ([f"{base}.{ours}.{p}"], _as_is)
                out[f"{prefix}.proj.{p}"] = ([f"{base}.proj_out.{p}"], _as_is)
            else:
                names = attention or (
                    {"norm": "norm", "q": "q", "k": "k", "v": "v", "proj": "proj_out"}
                    if layout is Layout.DDPM
                    else DIFFUSERS_ATTENTION[1]
                )
                out[f"{prefix}.norm.{p}"] = ([f"{base}.{names['norm']}.{p}"], _as_is)
                out[f"{prefix}.qkv.{p}"] = ([f"{base}.{names[x]}.{p}" for x in "qkv"], _stacked)
                out[f"{prefix}.proj.{p}"] = ([f"{base}.{names['proj']}.{p}"], _as_is)
    return out


def convert(state: dict[str, torch.Tensor], layout: Layout, cfg: UNetConfig, name: str) -> dict[str, torch.Tensor]:
    """The project's state dict from a layout's, strictly: every key used, every shape as the network needs."""
    with torch.device("meta"):
        wanted = {k: v.shape for k, v in UNet(cfg).state_dict().items()}
    attention = None
    if layout is Layout.DIFFUSERS:
        attention = next(
            (a for a in DIFFUSERS_ATTENTION if any(f".{a['q']}.weight" in k for k in state)), DIFFUSERS_ATTENTION[1]
        )
    plan = sources(layout, cfg, attention)  # shortcuts included; the network has one only where widths differ
    assert set(wanted) <= set(plan), "the layout map misses parameters"  # a bug here, not in the file
    plan = {k: plan[k] for k in wanted}
    needed = [k for keys, _ in plan.values() for k in keys]
    missing = [k for k in needed if k not in state]
    unknown = sorted(set(state) - set(needed))
    if missing or unknown:
        raise CheckpointError(
            f"{name}: does not fit the profile's {layout.value} network ({len(missing)} missing keys"
            f"{': ' + ', '.join(missing[:4]) if missing else ''}; {len(unknown)} unknown keys"
            f"{': ' + ', '.join(unknown[:4]) if unknown else ''}); check model.* (ch, ch_mult, num_res_blocks, "
            "attn_resolutions) and data.resolution against the checkpoint"
        )
    converted = {}
    for ours, (keys, make) in plan.items():
        tensor = make([state[k] for k in keys], wanted[ours])
        if tensor.shape != wanted[ours]:
            raise CheckpointError(
                f"{name}: {keys[0]} has shape {list(state[keys[0]].shape)}, the profile's network wants "
                f"{list(wanted[ours])} for {ours}; check model.* against the checkpoint"
            )
        converted[ours] = tensor
    return converted


def check_conventions(layout: Layout, cfg: UNetConfig, name: str, expected: dict | None = None) -> None:
    """The profile must build the network the way the checkpoint's code did; a differing option is named."""
    for key, value in (expected if expected is not None else CONVENTIONS[layout]).items():
        have = getattr(cfg, key)
        if have != value:
            shown = {"time_scale": "model.rescale_timesteps"}.get(key, f"model.{key}")
            raise CheckpointError(
                f"{shown}: {name} was trained with {key} = {getattr(value, 'value', value)!r}, the profile builds "
                f"{getattr(have, 'value', have)!r}; set it to match the {layout.value} layout"
            )


# diffusers' UNet2DModel config keys that change the function, with diffusers' default (what an absent key means)
# and the one value this U-Net reproduces.
_DIFFUSERS_FIXED = {
    "center_input_sample": (False, False),
    "time_embedding_type": ("positional", "positional"),
    "resnet_time_scale_shift": ("default", "default"),
    "mid_block_scale_factor": (1, 1),
    "act_fn": ("silu", "silu"),
    "norm_num_groups": (32, 32),
    "attn_norm_num_groups": (None, None),
    "add_attention": (True, True),
    "mid_block_type": ("UNetMidBlock2D", "UNetMidBlock2D"),
    "downsample_type": ("conv", "conv"),
    "upsample_type": ("conv", "conv"),
    "class_embed_type": (None, None),
    "num_class_embeds": (None, None),
}
_DIFFUSERS_BLOCKS = {
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D"),
}
_DIFFUSERS_CHANNELS = (224, 448, 672, 896)  # diffusers' defaults of block_out_channels and down_block_types
_DIFFUSERS_DOWN = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")


def diffusers_conventions(config: dict, name: str) -> dict:
    """The U-Net options a diffusers ``UNet2DModel`` config.json implies (an absent key means diffusers' default);
    a key whose value this U-Net does not reproduce is refused in one line naming it."""

    def get(key, default):
        return config.get(key, default)

    def refuse(key, what: str):
        raise CheckpointError(f"{name}: config.json: {key} {get(key, None)!r} is not reproduced by this U-Net ({what})")

    for key, (default, supported) in _DIFFUSERS_FIXED.items():
        value = get(key, default)
        if value != supported and not (key == "attn_norm_num_groups" and value == get("norm_num_groups", 32)):
            refuse(key, f"it builds {supported!r}" if supported is not None else "it builds none")
    channels = list(get("block_out_channels", _DIFFUSERS_CHANNELS))
    if get("time_embedding_dim", None) not in (None, 4 * channels[0]):
        refuse("time_embedding_dim", f"it builds 4 × block_out_channels[0] = {4 * channels[0]}")
    for key, allowed in _DIFFUSERS_BLOCKS.items():
        if any(block not in allowed for block in get(key, ())):
            refuse(key, f"it builds {' and '.join(allowed)} blocks")
    flip, shift = bool(get("flip_sin_to_cos", True)), int(get("freq_shift", 0))
    if (flip, shift) == (False, 1):
        embedding = Embedding.DDPM
    elif (flip, shift) == (True, 0):
        embedding = Embedding.IDDPM
    else:
        raise CheckpointError(
            f"{name}: config.json: flip_sin_to_cos={flip} with freq_shift={shift} is neither "
            "DDPM's embedding (false, 1) nor iDDPM's (true, 0)"
        )
    padding = {0: Padding.SAME, 1: Padding.SYMMETRIC}.get(int(get("downsample_padding", 1)))
    if padding is None:
        raise CheckpointError(f"{name}: config.json: downsample_padding {get('downsample_padding', 1)!r} is not 0 or 1")
    return {
        **CONVENTIONS[Layout.DIFFUSERS],
        "norm_eps": float(get("norm_eps", 1e-5)),
        "downsample_padding": padding,
        "time_embedding": embedding,
        "num_heads": _diffusers_heads(config, name),
    }


def _diffusers_heads(config: dict, name: str) -> int:
    """Attention heads: diffusers gives each attention block width / attention_head_dim heads (default 8 channels a
    head; null: one head); this U-Net has one head count, so every attention block must get the same."""
    head_dim = config.get("attention_head_dim", 8)
    channels = list(config.get("block_out_channels", _DIFFUSERS_CHANNELS))
    blocks = config.get("down_block_types", _DIFFUSERS_DOWN)
    widths = [c for c, block in zip(channels, blocks, strict=False) if "Attn" in block]
    widths.append(channels[-1])  # the middle block
    if head_dim is None:
        return 1
    if any(w % int(head_dim) for w in widths):
        raise CheckpointError(
            f"{name}: config.json: attention_head_dim {head_dim} does not divide the attention "
            f"widths {sorted(set(widths))}"
        )
    heads = sorted({w // int(head_dim) for w in widths})
    if len(heads) > 1:
        raise CheckpointError(
            f"{name}: config.json: attention_head_dim {head_dim} gives {heads} heads at the "
            f"attention widths {sorted(set(widths))}; this U-Net has one head count for all"
        )
    return heads[0]
