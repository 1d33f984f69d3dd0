"""A refused run leaves the workspace as it was. The check stage is the first stage of every execution and the one a
bad value stops; by then DVC has removed the check stage's output (``outputs/checked.txt``, whose bytes never
change) and a `dvc exp run -S …` has written the asked values into params.yaml. So on a refusal the check stage puts
back its output and, for a `dvc exp run` in the workspace, the params.yaml of the last run that passed the check:
the bytes it kept then (``remember_checked``) or, when DVC's lock has changed since (``dvc exp apply``, a check
restored from DVC's run cache), the values dvc.lock recorded for the check stage, in the file's key order. dvc.lock
itself is untouched (DVC writes it only after a stage succeeds), so ``dvc status`` is what it was before the run. A
params.yaml edited by hand for `dvc repro` is left as it is: the line says to fix it there."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ddpm.storage.files import write_text

from .dvc_records import read_yaml

SAVED = Path(".dvc") / "tmp" / "ddpm-checked-params.yaml"  # params.yaml as the last run that passed the check


def remember_checked(params_path: Path, cwd: Path = Path(".")) -> None:
    """Keep the bytes of ``params_path`` that passed the check, in DVC's tmp folder (a DVC workspace only)."""
    if (cwd / ".dvc").is_dir():
        write_text(cwd / SAVED, params_path.read_text())


def _locked_params(cwd: Path) -> dict[str, Any] | None:
    """The params values dvc.lock records for the check stage (its last successful run), or None."""
    try:
        params = (read_yaml(cwd / "dvc.lock") or {})["stages"]["check"]["params"]["params.yaml"]
    except (KeyError, TypeError):
        return None
    return params if isinstance(params, dict) else None


def _changed(now: Any, before: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two params trees."""
    if not isinstance(now, dict) or not isinstance(before, dict):
        return [] if now == before else [prefix.rstrip(".") or "params.yaml"]
    keys = [*now, *(k for k in before if k not in now)]
    return [key for k in keys for key in _changed(now.get(k), before.get(k), f"{prefix}{k}.")]


def _ordered_as(values: Any, layout: Any) -> Any:
    """``values`` (dvc.lock sorts keys) in the key order of ``layout`` (the composed file), new keys last."""
    if not isinstance(values, dict):
        return values
    order = list(layout) if isinstance(layout, dict) else []
    keys = [k for k in order if k in values] + [k for k in values if k not in order]
    return {k: _ordered_as(values[k], layout.get(k) if isinstance(layout, dict) else None) for k in keys}


def _in_workspace_exp_run(cwd: Path) -> bool:
    """Whether this stage runs for a `dvc exp run` in the workspace (not a queue worker's or ``--temp`` copy)."""
    root = os.environ.get("DVC_ROOT")
    return bool(os.environ.get("DVC_EXP_BASELINE_REV")) and root is not None and Path(root).resolve() == cwd.resolve()


def put_back(params_path: Path, checked_path: Path, checked_text: str, cwd: Path = Path(".")) -> str:
    """After a refusal: restore the check stage's output and, under a workspace `dvc exp run`, the last checked
    params.yaml. Returns the end of the error line: what is as before and how to get on."""
    before = _locked_params(cwd)
    if before is None or "DVC_STAGE" not in os.environ:
        return ""  # never checked here, or not run by DVC: nothing was removed
    if not checked_path.exists():
        write_text(checked_path, checked_text)
    now = read_yaml(params_path)
    changed = _changed(now, before)
    if not changed:
        return " — the workspace is as before this run"
    if not _in_workspace_exp_run(cwd):
        return f" — every output is as before this run: fix {params_path.name} and run again"
    saved = cwd / SAVED
    text = saved.read_text() if read_yaml(saved) == before else None  # None: missing, or another run's
    write_text(params_path, text or yaml.safe_dump(_ordered_as(before, now), sort_keys=False))
    shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    return f" — the workspace is as before this run ({params_path.name} back to the last checked {shown})"
