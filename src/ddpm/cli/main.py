"""The ``ddpm`` command, installed with the project (``.venv/bin/ddpm``); ``USAGE`` is what ``ddpm --help`` prints."""

from __future__ import annotations

import importlib
import sys

from ddpm.config import did_you_mean

USAGE = """\
usage: ddpm COMMAND [options]   (ddpm COMMAND --help: its options)

ddpm compare [NAME …] [-A] [--md] [--baseline]  experiments side by side: headline metrics, the params that differ
ddpm table ddpm|iddpm [-S key=value …]          a paper table from MLflow (--commands: its rows as queue commands)
ddpm replay mlflow-pending/*.jsonl              send the MLflow logs kept while the store was out of reach
ddpm isc-weights                                fetch torch-fidelity's Inception weights (IS) into the torch hub cache
ddpm profile [NAME | --reset]                   the workspace's default profile, which dvc exp run -S key=value varies
ddpm mlflow [--port N]                          the command that opens the MLflow UI, and each experiment's page
ddpm export --diffusers MODEL DIR               a trained model as a diffusers pipeline folder (from_pretrained)
ddpm upload-shards FOLDER URL                   prepared shards copied to a bucket (s3://…) for data.shards_url"""


MODULES = {  # command → its module under ddpm.cli (each has parser() and main(argv))
    "compare": "compare",
    "table": "tables",
    "replay": "replay",
    "isc-weights": "isc_weights",
    "profile": "profile",
    "mlflow": "mlflow_ui",
    "export": "export",
    "upload-shards": "upload_shards",
}


COMMANDS = tuple(MODULES)


def command_module(name: str):
    """The module of command ``name`` (imported on use: each pulls in what only it needs)."""
    return importlib.import_module(f"ddpm.cli.{MODULES[name]}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv or argv[0] not in COMMANDS:
        if argv:
            print(f"error: ddpm: no command {argv[0]!r}{did_you_mean(argv[0], COMMANDS)}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    return command_module(argv[0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
