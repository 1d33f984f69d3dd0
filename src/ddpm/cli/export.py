"""`ddpm export`: a trained model as a diffusers DDPMPipeline folder (save_pretrained's layout: unet/ and
scheduler/), which diffusers loads with from_pretrained; a network or process diffusers cannot represent is refused
by the key that says so, before anything is written.

    ddpm export --diffusers models/ema.safetensors out/ddpm-digits        # with the workspace's params.yaml
    ddpm export --diffusers models:/ddpm-digits@best_fid out/best         # a registered model (its own params)
    ddpm export --diffusers runs:/<run id>/ema_model out/run              # any MLflow model URI
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from . import command_parser


def parser() -> argparse.ArgumentParser:
    """``ddpm export``'s options (also the manual's reference page)."""
    parser = command_parser("ddpm export", __doc__)
    parser.add_argument("--diffusers", action="store_true", required=True, help="the format (the only one)")
    parser.add_argument("model", help="a model file (.safetensors) or an MLflow model URI (models:/…, runs:/…)")
    parser.add_argument("out", type=Path, help="the folder to write (must not exist)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="a model file's params.yaml")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from ddpm.config import load_params
    from ddpm.importers.export import export_diffusers
    from ddpm.storage.model_files import load_model

    try:
        if Path(args.out).exists():
            raise FileExistsError(f"{args.out}: already exists; name a new folder")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(args.model).suffix == ".safetensors" or Path(args.model).exists()
            if local:
                weights, params_file = Path(args.model), args.params
            else:
                from ddpm.tracking.registry import download_model

                weights, params_file = download_model(args.model, Path(tmp))
            params = load_params(str(params_file))
            out = export_diffusers(load_model(weights, "cpu"), params, args.out)
    except (ValueError, OSError) as err:
        print(f"error: ddpm export: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}/ (diffusers DDPMPipeline: DDPMPipeline.from_pretrained({str(out)!r}))")
    return 0
