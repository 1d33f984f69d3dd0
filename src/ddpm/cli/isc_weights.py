"""`ddpm isc-weights`: fetch torch-fidelity's Inception weights (for the Inception Score) into the torch hub cache,
SHA-256 checked, where the network allows; print where they are.

    ddpm isc-weights     # then copy the file into $TORCH_HOME/hub/checkpoints/ where IS runs offline
"""

from __future__ import annotations

import argparse
import sys

from . import command_parser


def parser() -> argparse.ArgumentParser:
    """``ddpm isc-weights``'s options (also the manual's reference page)."""
    return command_parser("ddpm isc-weights", __doc__)


def main(argv: list[str]) -> int:
    parser().parse_args(argv)
    from ddpm.evaluation.isc_weights import AUTO, Unavailable, isc_weights_path

    try:
        print(f"IS weights: {isc_weights_path(AUTO)}")
    except (Unavailable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
