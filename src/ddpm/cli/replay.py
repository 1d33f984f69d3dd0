"""`ddpm replay`: send the MLflow logs that stages kept in mlflow-pending/ while the tracking store was out of
reach; each file becomes its run (tagged ddpm.replayed) under the same pipeline run, and is renamed *.sent.

    ddpm replay mlflow-pending/*.jsonl
"""

from __future__ import annotations

import argparse

from . import command_parser


def parser() -> argparse.ArgumentParser:
    """``ddpm replay``'s options (also the manual's reference page)."""
    parser = command_parser("ddpm replay", __doc__)
    parser.add_argument("files", nargs="+", metavar="FILE", help="kept logs, mlflow-pending/<stage>-<time>-<pid>.jsonl")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from ddpm.tracking.spool import replay_files

    return replay_files(args.files)
