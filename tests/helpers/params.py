"""Params as ``dvc exp run -S`` composes them from the committed conf/, patched."""

import copy
from functools import cache

from ddpm.config import Params, compose, validate_params

from . import ROOT


@cache
def _composed(overrides: tuple[str, ...]) -> dict:
    return compose((*overrides, "~local"), ROOT / "conf")  # never a workspace's own profile (conf/local/)


def compose_raw(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The params mapping ``dvc exp run -S ...`` composes from the committed conf/ (a fresh copy)."""
    return copy.deepcopy(_composed(tuple(overrides)))


def merged(base: dict, patch: dict) -> dict:
    """``base`` with ``patch`` merged in, section by section."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def make_params(patch: dict | None = None, profile: str | None = None) -> Params:
    """The default params (or a profile's) with ``patch`` merged in, validated."""
    return validate_params(merged(compose_raw([f"profile={profile}"] if profile else []), patch or {}))
