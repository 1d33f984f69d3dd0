"""The ``ddpm`` command, installed with the project (``.venv/bin/ddpm``); ``USAGE`` is what ``ddpm --help`` prints."""

from __future__ import annotations

import sys

from ddpm.config import did_you_mean

COMMANDS = ("compare", "table", "replay", "isc-weights", "profile", "mlflow")
USAGE = """\
usage: ddpm COMMAND [options]   (ddpm COMMAND --help: its options)

ddpm compare [NAME …] [-A] [--md] [--baseline]  experiments side by side: headline metrics, the params that differ
ddpm table ddpm|iddpm [-S key=value …]          a paper table from MLflow (--commands: its rows as queue commands)
ddpm replay mlflow-pending/*.jsonl              send the MLflow logs kept while the store was out of reach
ddpm isc-weights                                fetch torch-fidelity's Inception weights (IS) into the torch hub cache
ddpm profile [NAME | --reset]                   the workspace's default profile, which dvc exp run -S key=value varies
ddpm mlflow [--port N]                          the command that opens the MLflow UI, and each experiment's page"""


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
    name, rest = argv[0], argv[1:]
    if name == "compare":
        from .compare import main as compare

        return compare(rest)
    if name == "table":
        from .tables import main as table

        return table(rest)
    if name == "mlflow":
        from .mlflow_ui import main as mlflow_ui

        return mlflow_ui(rest)
    if name == "profile":
        from .profile import main as profile

        return profile(rest)
    if name == "replay":
        from ddpm.tracking.spool import replay_files

        if not rest:
            print("usage: ddpm replay mlflow-pending/<file>.jsonl ...", file=sys.stderr)
            return 2
        return replay_files(rest)
    from ddpm.evaluation.isc_weights import AUTO, Unavailable, isc_weights_path

    try:
        print(f"IS weights: {isc_weights_path(AUTO)}")
    except (Unavailable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
