"""Checkpoints of the project's networks in the authors' layouts (the inverse of the importers' maps)."""

import json
from pathlib import Path

import torch

IDDPM_CONVENTIONS = {
    "norm_eps": 1e-5,
    "downsample_padding": "symmetric",
    "time_embedding": "iddpm",
    "qkv_layout": "heads",
}


def export_layout(model, layout) -> dict:
    """The project's weights in a reference layout (the inverse of the import map; shapes as the project's, which
    the importer reshapes): small checkpoints of each layout for the tests."""
    from ddpm.importers.layouts import sources

    out, state = {}, model.state_dict()
    for ours, (keys, _) in sources(layout, model.config).items():
        if ours in state:
            parts = state[ours].chunk(len(keys)) if len(keys) > 1 else [state[ours]]
            out.update({k: p.clone() for k, p in zip(keys, parts, strict=True)})
    return out


def write_released(model, layout, folder: Path) -> Path:
    """A checkpoint of ``model`` as its authors would publish it: DDIM's training list with an EMA copy (.ckpt),
    an improved-diffusion state dict (.pt), or a diffusers folder with its config and scheduler."""
    from ddpm.importers import Layout

    state = export_layout(model, layout)
    folder.mkdir(parents=True, exist_ok=True)
    if layout is Layout.DDPM:
        path = folder / "model-790000.ckpt"
        torch.save([{k: v + 1 for k, v in state.items()}, {}, 1, 790000, state], path)
    elif layout is Layout.IDDPM:
        path = folder / "ema_0.9999_500000.pt"
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        path = folder / "ddpm-tiny"
        (path / "unet").mkdir(parents=True)
        weights = path / "unet" / "diffusion_pytorch_model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
        (path / "unet" / "config.json").write_text(
            json.dumps(
                {
                    "norm_eps": model.config.norm_eps,
                    "downsample_padding": 0,
                    "flip_sin_to_cos": False,
                    "freq_shift": 1,
                    "attention_head_dim": None,
                }
            )
        )
    return path
