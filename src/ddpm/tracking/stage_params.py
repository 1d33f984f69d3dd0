"""Params as MLflow and `dvc exp show` name them (dotted keys), and which of them a stage reads: the ``params:``
list of its stage in dvc.yaml (a section name such as ``train`` stands for every key under it), so that its MLflow
run carries those and not all of params.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

ALWAYS = ("profile", "dataset")  # name the setting of every run


def declared_params(stage: str, flat: dict[str, object], dvc_yaml: Path = Path("dvc.yaml")) -> dict[str, object]:
    """The entries of the flattened params ``flat`` that ``stage`` declares in ``dvc_yaml``, plus the profile and
    dataset; all of ``flat`` when the file or the stage is not there (a stage run outside a DVC project)."""
    try:
        stages = yaml.safe_load(dvc_yaml.read_text()).get("stages") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return dict(flat)
    if stage not in stages:
        return dict(flat)
    names = [*ALWAYS, *(p for p in stages[stage].get("params") or [] if isinstance(p, str))]
    return {k: v for k, v in flat.items() if any(k == n or k.startswith(n + ".") for n in names)}
