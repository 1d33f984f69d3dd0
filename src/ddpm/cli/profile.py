"""The workspace's default profile: the profile ``dvc exp run`` composes when no ``-S profile=…`` is given.

Kept in ``conf/local/workspace.yaml`` (git-ignored; ``conf/config.yaml`` composes it when present), so it belongs
to one checkout and never to a commit. DVC composes params.yaml in the workspace before a run is queued or copied
to a temporary folder, so queued and ``--temp`` experiments see it too.

    ddpm profile            # the workspace's default profile
    ddpm profile tiny       # make it tiny: `dvc exp run -S schedule=cosine` is then the tiny cosine variant
    ddpm profile --reset    # back to the committed default (conf/config.yaml)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ddpm.storage.files import write_text

from . import command_parser

LOCAL = Path("local") / "workspace.yaml"  # under conf/


def profiles(conf_dir: Path) -> list[str]:
    return sorted(p.stem for p in (conf_dir / "profile").glob("*.yaml"))


def committed_default(conf_dir: Path) -> str:
    defaults = yaml.safe_load((conf_dir / "config.yaml").read_text())["defaults"]
    return next(entry["profile"] for entry in defaults if isinstance(entry, dict) and "profile" in entry)


def current(conf_dir: Path) -> str:
    """The profile a bare ``dvc exp run -S key=value`` composes in this workspace."""
    path = conf_dir / LOCAL
    if path.is_file():
        for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults") or []:
            if isinstance(entry, dict) and "override /profile" in entry:
                return str(entry["override /profile"])
    return committed_default(conf_dir)


def set_profile(name: str, conf_dir: Path) -> Path:
    """Write ``conf/local/workspace.yaml`` selecting ``name``; a name that is not a profile is refused first."""
    known = profiles(conf_dir)
    if name not in known:
        raise ValueError(f"profile {name!r} is not one of conf/profile/: {', '.join(known)}")
    path = conf_dir / LOCAL
    path.parent.mkdir(exist_ok=True)
    write_text(
        path,
        "# @package _global_\n"
        "# This workspace's default profile (git-ignored; `ddpm profile --reset` removes it): `dvc exp run`\n"
        "# composes it unless -S profile=... is given.\n"
        f"defaults:\n  - override /profile: {name}\n",
    )
    return path


def parser() -> argparse.ArgumentParser:
    """``ddpm profile``'s options (also the manual's reference page)."""
    parser = command_parser("ddpm profile", __doc__)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("name", nargs="?", help="make this profile (a file of conf/profile/) the workspace's default")
    which.add_argument("--reset", action="store_true", help="back to the committed default (conf/config.yaml)")
    return parser


def main(argv: list[str], conf_dir: Path = Path("conf")) -> int:
    args = parser().parse_args(argv)
    if not (conf_dir / "config.yaml").is_file():
        print(f"error: ddpm profile: {conf_dir / 'config.yaml'} not found; run it in the project root", file=sys.stderr)
        return 1
    if args.reset:
        (conf_dir / LOCAL).unlink(missing_ok=True)
    elif args.name:
        try:
            set_profile(args.name, conf_dir)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    name, default = current(conf_dir), committed_default(conf_dir)
    where = "the committed default" if not (conf_dir / LOCAL).is_file() else f"{conf_dir / LOCAL}; default {default}"
    print(f"profile: {name} ({where})")
    return 0
