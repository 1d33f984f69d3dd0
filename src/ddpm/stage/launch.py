"""How many processes the ``launcher`` param starts, read from the command itself where it says (``python``: one;
``accelerate launch`` with ``--num_processes`` or a ``--config_file`` naming them), so that the check stage can
refuse a global batch that does not split over them before DVC removes any output. None where only the launched
environment knows (a cluster script, a launcher without a count)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml


def launched_processes(launcher: str, root: Path = Path(".")) -> int | None:
    words = [w for w in shlex.split(launcher) if not _is_assignment(w)]  # leading VAR=value settings
    if not words:
        return None
    program = Path(words[0]).name
    if program.startswith("python") and len(words) == 1:
        return 1
    if program == "accelerate" and words[1:2] == ["launch"]:
        options = _options(words[2:])
        if "num_processes" in options:
            return _count(options["num_processes"])
        if "config_file" in options:
            path = root / options["config_file"]
            if path.is_file():
                config = yaml.safe_load(path.read_text()) or {}
                return _count(config.get("num_processes", 1))
    return None


def _is_assignment(word: str) -> bool:
    name, eq, _ = word.partition("=")
    return bool(eq) and name.isidentifier()


def _options(words: list[str]) -> dict[str, str]:
    """``--key value`` and ``--key=value`` pairs (dashes and underscores alike, as accelerate reads them)."""
    found: dict[str, str] = {}
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        key, eq, value = word[2:].partition("=")
        if not eq and i + 1 < len(words) and not words[i + 1].startswith("--"):
            value = words[i + 1]
        found[key.replace("-", "_")] = value
    return found


def _count(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
