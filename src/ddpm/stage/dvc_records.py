"""What DVC has recorded of a stage, read from its files: the stage's entry in dvc.lock and its run cache
(``.dvc/cache/runs``). A stage cannot ask DVC itself (the running `dvc` holds the repository's lock); the check
stage uses this to tell whether a later stage will really run or be restored by DVC."""

from __future__ import annotations

import configparser
import hashlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

PARAMS = "params.yaml"


def _cache_dir(cwd: Path) -> Path:
    """DVC's cache folder: ``cache.dir`` of .dvc/config.local or .dvc/config (a queue worker's or ``--temp`` copy
    points at the workspace's), else .dvc/cache."""
    for name in ("config.local", "config"):
        config = configparser.ConfigParser()
        try:
            config.read(cwd / ".dvc" / name)
        except configparser.Error:
            continue
        folder = config.get("cache", "dir", fallback=None)
        if folder:
            return cwd / ".dvc" / Path(folder).expanduser()  # an absolute dir replaces the prefix
    return cwd / ".dvc" / "cache"


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: DVC writes ``1e-06`` (no dot), which YAML 1.1 reads
    as a string."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: Path) -> Any:
    """A YAML file DVC wrote or reads (dvc.yaml, dvc.lock, params.yaml, a run-cache entry), floats as DVC means
    them; None when it cannot be read."""
    try:
        return yaml.load(path.read_text(), Loader=_Yaml12Loader)  # noqa: S506 - a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _entries(stage: str, cwd: Path) -> Iterator[dict]:
    """dvc.lock's entry for ``stage``, then every run-cache entry (any stage: the caller matches the command)."""
    lock = read_yaml(cwd / "dvc.lock")
    if isinstance(lock, dict) and isinstance(lock.get("stages"), dict):
        entry = lock["stages"].get(stage)
        if isinstance(entry, dict):
            yield entry
    runs = _cache_dir(cwd) / "runs"
    if runs.is_dir():
        for path in sorted(runs.glob("*/*/*")):
            entry = read_yaml(path)
            if isinstance(entry, dict):
                yield entry


def _file_matches(dep: Any, cwd: Path, will_hold: Mapping[str, bytes]) -> bool:
    """Whether a recorded file dependency has its recorded MD5 (a folder is taken as unchanged)."""
    if not isinstance(dep, dict) or "path" not in dep:
        return False
    md5 = str(dep.get("md5", ""))
    if md5.endswith(".dir"):
        return True
    try:
        data = will_hold[dep["path"]] if dep["path"] in will_hold else (cwd / dep["path"]).read_bytes()
    except OSError:
        return False
    return hashlib.md5(data).hexdigest() == md5  # noqa: S324 - DVC's own hash


def recorded(stage: str, will_hold: Mapping[str, bytes] | None = None, cwd: Path = Path(".")) -> bool:
    """Whether DVC holds ``stage``'s outputs for the workspace's current params and files: dvc.lock's entry or a
    run-cache entry with the stage's command, its params' values in params.yaml and its file dependencies' MD5s
    (DVC then keeps or restores those outputs instead of running the stage). ``will_hold``: the bytes of files an
    earlier stage of this execution is about to write (the check stage's own output)."""
    spec = _lookup(read_yaml(cwd / "dvc.yaml"), f"stages.{stage}")
    params = read_yaml(cwd / PARAMS)
    if not isinstance(spec, dict) or not isinstance(params, dict):
        return False
    keys = [k for k in spec.get("params") or [] if isinstance(k, str)]
    wanted = {key: _lookup(params, key) for key in keys}
    for entry in _entries(stage, cwd):
        if entry.get("cmd") != spec.get("cmd"):
            continue
        values = (entry.get("params") or {}).get(PARAMS) or {}
        if values == wanted and all(_file_matches(dep, cwd, will_hold or {}) for dep in entry.get("deps") or []):
            return True
    return False
