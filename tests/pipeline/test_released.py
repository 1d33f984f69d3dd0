"""A released checkpoint through the DAG: model.import_from makes the train stage import instead of train; the
small tiny-profile network in each published layout."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from helpers import ROOT
from helpers.params import compose_raw, merged
from helpers.released import IDDPM_CONVENTIONS, write_released
from helpers.repos import checkout_copy, pipeline_env, sh

from ddpm.config import validate_params
from ddpm.core.unet import UNet
from ddpm.factory import unet_config
from ddpm.importers import Layout
from ddpm.storage.model_files import load_model


def tiny_params(layout: Layout, path) -> dict:
    model = {"import_from": {"path": str(path), "format": "auto"}}
    if layout is Layout.IDDPM:
        model |= IDDPM_CONVENTIONS
    return merged(compose_raw(["profile=tiny"]), {"model": model})


def tiny_network(raw: dict) -> UNet:
    torch.manual_seed(0)
    model = UNet(unet_config(validate_params(raw), 1))
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return model.eval()


@pytest.mark.parametrize("layout", list(Layout))
def test_train_stage_imports_the_checkpoint_instead_of_training(layout, tmp_path, digit_shards):
    shutil.copytree(digit_shards, tmp_path / "data" / "shards" / "digits")
    placeholder = tiny_params(layout, "set below")
    source = tiny_network(placeholder)
    path = write_released(source, layout, tmp_path / "released")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(layout, path)))
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", DVC_ROOT=str(tmp_path))
    res = subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / "train.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"({layout.value} layout): took" in res.stdout
    metrics = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert metrics["layout"] == layout.value and metrics["steps"] == 0
    if layout is Layout.DDPM:
        assert metrics["weights"].startswith("the EMA weights (entry 5 of 5)")
    imported = load_model(tmp_path / "models" / "ema.safetensors", "cpu")
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0, 99])
    with torch.no_grad():
        torch.testing.assert_close(imported(x, t), source(x, t), rtol=0, atol=0)
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_a_missing_checkpoint_is_named_before_any_work(tmp_path, digit_shards):
    shutil.copytree(digit_shards, tmp_path / "data" / "shards" / "digits")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(Layout.DDPM, "released/none.ckpt")))
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", DVC_ROOT=str(tmp_path))
    res = subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / "train.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == "error: train: released/none.ckpt: no such checkpoint file or folder"
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("layout", list(Layout))
def test_released_checkpoint_through_the_tiny_dag(layout, tmp_path):
    """One command evaluates a released checkpoint: the whole DAG runs on the imported weights."""
    env = pipeline_env()
    repo = checkout_copy(tmp_path / "repo", env)
    path = write_released(tiny_network(tiny_params(layout, "x")), layout, repo / "released")
    overrides = ["-S", "profile=tiny", "-S", f"model.import_from.path={path.relative_to(repo)}"]
    if layout is Layout.IDDPM:
        overrides += [arg for k, v in IDDPM_CONVENTIONS.items() for arg in ("-S", f"model.{k}={v}")]
    sh(["dvc", "exp", "run", *overrides], repo, env, timeout=1800)
    report = (repo / "reports" / "results.md").read_text()
    assert f"imported: {path.relative_to(repo)} ({layout.value} layout" in report
    evaluation = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert evaluation["num_samples"] == 128 and evaluation["fid_train"] > 0
