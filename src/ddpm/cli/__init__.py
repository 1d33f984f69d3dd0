"""The commands users type (``ddpm --help``; ``main.MODULES`` maps each to its module): ``ddpm compare``
(experiments side by side), ``ddpm table`` (a paper table as a queued grid, and the table from MLflow), ``ddpm
replay`` (send a spooled MLflow log), ``ddpm isc-weights`` (fetch the IS weights), ``ddpm profile`` (the workspace's
default profile), ``ddpm mlflow`` (open the UI), ``ddpm export`` (a diffusers pipeline), ``ddpm upload-shards`` (shards
to an object store)."""

from __future__ import annotations

import argparse
import re


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A command's parser, described by the first paragraph of its module's docstring as plain text (no
    backquotes, no leading "`ddpm x`:")."""
    text = " ".join((doc or "").split("\n\n")[0].split()).replace("`", "")
    text = re.sub(rf"^{re.escape(prog)}: ", "", text)
    return argparse.ArgumentParser(prog=prog, description=text[:1].upper() + text[1:])
