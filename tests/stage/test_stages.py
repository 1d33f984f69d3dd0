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


def test_a_stage_run_by_hand_says_so_and_logs_nothing_unless_asked(tmp_path):
    """Outside DVC (no ``DVC_STAGE``) a stage does its work but writes no MLflow run or model version: one note;
    ``DDPM_TRACK_OUTSIDE_DVC=1`` logs it as DVC would."""
    tiny = {"dataset": "digits", "data": {"resolution": 8, "limit": 40, "test_size": 10}}
    params = merged(compose_raw(), tiny | {"model": {"ch_mult": [1, 2], "attn_resolutions": [4]}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k != "DDPM_TRACK_OUTSIDE_DVC" and not k.startswith("DVC_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = [sys.executable, str(ROOT / "pipeline" / "prepare.py")]
    res = subprocess.run(script, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    notes = [line for line in res.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: prepare: run outside DVC, so nothing goes to MLflow (no run, no model version); `dvc repro prepare` "
        "runs it in the pipeline, DDPM_TRACK_OUTSIDE_DVC=1 logs this run"
    ]
    assert (tmp_path / "data" / "shards" / "digits" / "manifest.json").is_file()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    asked = subprocess.run(
        script, cwd=tmp_path, env=env | {"DDPM_TRACK_OUTSIDE_DVC": "1"}, capture_output=True, text=True, timeout=300
    )
    assert asked.returncode == 0 and "note: " not in asked.stderr and (tmp_path / "mlflow.db").is_file()


def test_stages_start_with_the_projects_python_or_say_in_one_line_how_to_make_one(tmp_path):
    """dvc.yaml's commands go through pipeline/run.sh: a shell without the venv active (`.venv/bin/dvc repro`)
    still runs the stage with .venv's Python; with no such environment, one line instead of `python: not found`."""
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no venv on PATH: no `python`, or one without ddpm
    command = ["sh", str(ROOT / "pipeline" / "run.sh"), "python", "-c", "import ddpm, sys; print(sys.prefix)"]
    found = subprocess.run(command, env=bare | {"DVC_ROOT": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0 and Path(found.stdout.strip()).resolve() == (ROOT / ".venv").resolve(), found.stderr
    missing = subprocess.run(
        [*command[:3], "pipeline/train.py"], env=bare | {"DVC_ROOT": str(tmp_path), "DVC_STAGE": "train"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1 and missing.stderr.splitlines() == [
        "error: train: no Python with this project installed here: run `bash scripts/ensure-venv.sh`, then "
        "`source .venv/bin/activate`"
    ]
