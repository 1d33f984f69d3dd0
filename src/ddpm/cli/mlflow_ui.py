"""`ddpm mlflow`: how to open the MLflow UI on this project's store, and the page of each dataset's experiment as
it should open (the model-training view, pipeline runs best FID first with the headline columns).

    ddpm mlflow                   # the `mlflow ui` command, then one address per experiment
    ddpm mlflow --port 5056       # the same for another port
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ddpm.tracking.store import experiment_pages, tracking_uri

from . import command_parser


def parser() -> argparse.ArgumentParser:
    """``ddpm mlflow``'s options (also the manual's reference page)."""
    parser = command_parser("ddpm mlflow", __doc__)
    parser.add_argument("--port", type=int, default=5000, help="the port the UI will listen on (default 5000)")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    uri, base = tracking_uri(), f"http://127.0.0.1:{args.port}"
    mlflow = Path(sys.executable).parent / "mlflow"
    if uri.startswith("sqlite:///"):
        command = [str(mlflow if mlflow.is_file() else "mlflow"), "ui", "--backend-store-uri", uri]
        print(
            "Open the MLflow UI:  " + shlex.join([*command, *(["--port", str(args.port)] if args.port != 5000 else [])])
        )
        if not Path(uri.removeprefix("sqlite:///")).is_file():
            print(f"  (no store yet at {uri}: run the pipeline first)")
            return 0
    else:
        print(f"MLflow server: {uri}")
        base = uri.rstrip("/")
    pages = experiment_pages(uri, base)
    for name, url in pages:
        print(f"  {name}: {url}")
    if not pages:
        print(f"  then {base}/#/experiments?workflowType=machine_learning")
    return 0
