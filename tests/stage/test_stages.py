"""Every stage validates params before any work and fails with one line naming the key or file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.params import compose_raw, merged

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["prepare", "fid_ref", "train", "sample", "evaluate", "report"]


def run_stage(stage, cwd, params):
    (cwd / "params.yaml").write_text(yaml.safe_dump(merged(compose_raw(), params)))
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}", DVC_ROOT=str(cwd))
    return subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / f"{stage}.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("stage", STAGES)
def test_bad_enum_fails_fast_in_one_line(stage, tmp_path):
    res = run_stage(stage, tmp_path, {"schedule": "quadratic"})
    assert res.returncode == 1  # sys.exit(message)
    lines = res.stderr.strip().splitlines()
    assert lines == ["error: params.yaml: schedule: Input should be 'linear' or 'cosine' (got 'quadratic')"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written, no MLflow store


@pytest.mark.parametrize(
    "stage,message",
    [
        ("prepare", "error: prepare: data.source: not set for dataset cifar10 and data.download is false"),
        ("fid_ref", "error: fid_ref: shards: data/shards/digits not found; run the prepare stage"),
        ("train", "error: train: shards: data/shards/digits/manifest.json not found; run the prepare stage"),
        ("sample", "error: sample: model: models/ema.safetensors not found; run the train stage"),
        ("evaluate", "error: evaluate: samples: outputs/samples not found; run the sample stage"),
        ("report", "error: report: metrics: metrics/train.json not found; run the train stage"),
    ],
)
def test_missing_inputs_name_the_path(stage, message, tmp_path):
    params = (
        {"data": {"download": False}}
        if stage == "prepare"
        else {"dataset": "digits", "data": {"resolution": 8}, "model": {"ch_mult": [1, 2], "attn_resolutions": [4]}}
    )
    res = run_stage(stage, tmp_path, params)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith(message)
