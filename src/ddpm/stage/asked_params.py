"""The params.yaml a workspace `dvc exp run` asked for. With Hydra enabled (``.dvc/config``), DVC composes the file
from ``conf/`` and the run's ``-S`` overrides before the first stage starts; a second `dvc exp run` started in the
same seconds rewrites it before the first's first stage can claim the workspace. Composing again from the
overrides on the first `dvc` command line tells the first run's params from the second's."""

from __future__ import annotations

import configparser
import tempfile
from pathlib import Path

PARAMS = "params.yaml"
ELSEWHERE = ("--temp", "--queue", "--no-hydra", "--run-all")  # runs in another copy, or composes nothing


def _argv(driver: str) -> list[str]:
    pid = driver.split(":")[0]
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def overrides(argv: list[str]) -> list[str] | None:
    """The ``-S`` overrides of params.yaml on a `dvc exp run` command line (None: not a workspace `dvc exp run`)."""
    words = argv[1:] if argv and Path(argv[0]).name.startswith("python") else argv
    words = words[1:]  # the dvc program
    if words[:2] != ["exp", "run"] or any(w in ELSEWHERE for w in words):
        return None
    found = []
    for i, word in enumerate(words):
        if word in ("-S", "--set-param") and i + 1 < len(words):
            found.append(words[i + 1])
        elif word.startswith("--set-param="):
            found.append(word.split("=", 1)[1])
        elif word.startswith("-S") and len(word) > 2:
            found.append(word[2:])
    from dvc.utils.cli_parse import to_path_overrides

    return to_path_overrides(found).get(PARAMS, [])


def _hydra(root: Path) -> dict[str, str] | None:
    config = configparser.ConfigParser()
    try:
        config.read(root / ".dvc" / "config")
    except configparser.Error:
        return None
    if not config.has_section("hydra") or config.get("hydra", "enabled", fallback="false").lower() != "true":
        return None
    return dict(config.items("hydra"))


def asked_params(driver: str, root: Path) -> bytes | None:
    """The bytes of params.yaml the `dvc exp run` of identity ``driver`` composed in the workspace ``root``; None
    where it composed none (not a workspace `dvc exp run`, Hydra off, a config module instead of a folder)."""
    hydra = _hydra(root)
    if hydra is None or "config_module" in hydra:
        return None
    asked = overrides(_argv(driver))
    if asked is None:
        return None
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / PARAMS
        compose_and_dump(
            out,
            str(root / hydra.get("config_dir", "conf")),
            None,
            hydra.get("config_name", "config"),
            str(root / hydra.get("plugins_path", "")),
            asked,
        )
        return out.read_bytes()
