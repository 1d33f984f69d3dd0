"""The EMA model in MLflow's registry: logged from code with its safetensors (no pickle), one version per train
run, the alias best_fid moved to the best-FID weights, loaded and sampled by a fresh process."""

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
import yaml
from helpers.params import compose_raw, make_params

from ddpm.config import flatten
from ddpm.core.generation import generate
from ddpm.evaluation.paper_tables import comparison_key
from ddpm.factory import build_model, load_for_inference
from ddpm.storage.files import file_digest
from ddpm.storage.model_files import save_model
from ddpm.tracking.lineage import FID_REFERENCE_TAG, MODEL_SHA_TAG
from ddpm.tracking.queries import promote_best_model
from ddpm.tracking.registry import BEST_ALIAS, registered_name
from ddpm.tracking.runs import StageRun

PATCH = {"timesteps": 50, "sample": {"sampler": "ddim", "steps": 5, "batch_size": 4}}


def _weights(params, path, seed):
    torch.manual_seed(seed)
    model = build_model(params, channels=1)
    with torch.no_grad():  # random weights: the output layer starts at zero
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    save_model(model, path)
    return file_digest(path)


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    return uri


def _train_and_evaluate(tmp_path, monkeypatch, name, seed, fid, steps=400):
    """A train run logging weights ``seed`` and an evaluate run of them scoring ``fid``, as one pipeline."""
    raw = compose_raw(["profile=tiny"])
    raw |= {
        "timesteps": PATCH["timesteps"],
        "sample": raw["sample"] | PATCH["sample"],
        "train": raw["train"] | {"steps": steps},
    }
    params_file = tmp_path / f"{name}.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    params = make_params(PATCH, profile="tiny")
    sha = _weights(params, tmp_path / f"{name}.safetensors", seed)
    monkeypatch.setenv("DDPM_PIPELINE_RUN", name)
    monkeypatch.setenv("DVC_EXP_NAME", name)
    with StageRun("train", raw, "ddpm-digits") as run:
        run.log_model(tmp_path / f"{name}.safetensors", params_file, "digits", sha)
    with StageRun("evaluate", raw, "ddpm-digits") as run:
        run.set_tags({MODEL_SHA_TAG: sha, FID_REFERENCE_TAG: "0123456789abcdef"})
        run.log_metrics({"fid_train": fid, "num_samples": 128})
    return params, tmp_path / f"{name}.safetensors"


def _key(**change) -> dict:
    """What the tiny runs above share (the comparison key the report passes), with ``change``."""
    raw = compose_raw(["profile=tiny"])
    raw["sample"] |= PATCH["sample"]  # the runs' sampler: ddim S=5
    flat = flatten(raw) | {"timesteps": PATCH["timesteps"], "fid_reference": "0123456789abcdef"}
    return comparison_key(flat | change)


def test_registered_model_loads_in_a_fresh_process_and_samples_as_the_sample_stage(tmp_path, monkeypatch, store):
    _train_and_evaluate(tmp_path, monkeypatch, "first", seed=1, fid=50.0)
    params, weights = _train_and_evaluate(tmp_path, monkeypatch, "second", seed=2, fid=40.0)
    _train_and_evaluate(tmp_path, monkeypatch, "third", seed=3, fid=45.0)
    _train_and_evaluate(tmp_path, monkeypatch, "longer", seed=4, fid=20.0, steps=480)  # not comparable: longer
    line = promote_best_model("digits", _key())
    assert line.startswith(f"alias {BEST_ALIAS} → ddpm-digits version 2 (FID 40.00, 128 samples, 400 steps, second)")
    client = mlflow.tracking.MlflowClient(store)
    name = registered_name("digits")
    assert [int(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [4, 3, 2, 1]
    assert str(client.get_model_version_by_alias(name, BEST_ALIAS).version) == "2"
    assert "models:/ddpm-digits@best_fid" in client.get_registered_model(name).description
    # other sample counts or samplers do not compare: no version scored over 64 samples or with 10 DDIM steps
    for change in ({"sample.num_samples": 64}, {"sample.steps": 10}):
        assert promote_best_model("digits", _key(**change)).startswith("no registered model of ddpm-digits")
    assert promote_best_model("digits", _key(**{"train.steps": 480})).startswith(
        f"alias {BEST_ALIAS} → ddpm-digits version 4 (FID 20.00"
    )
    promote_best_model("digits", _key())

    script = (
        "import json, sys, mlflow, numpy as np; mlflow.set_tracking_uri(sys.argv[1]); "
        "m = mlflow.pyfunc.load_model('models:/ddpm-digits@best_fid'); "
        "x = m.predict({'num_samples': 3, 'seed': 7}); "
        "y = m.predict({'num_samples': 2, 'seed': 7, 'sampler': 'ddim', 'steps': 4}); "
        "np.save(sys.argv[2], x); print(json.dumps([list(x.shape), str(x.dtype), list(y.shape)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, store, str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[3, 8, 8, 1], "uint8", [2, 8, 8, 1]]
    inference = load_for_inference(params, weights, "cpu")
    expected = generate(
        inference.diffusion,
        inference.model,
        inference.shape,
        seed=7,
        start=0,
        count=3,
        batch_size=3,
        device="cpu",
        **params.sample.sampler_options(),
    )
    got = np.load(tmp_path / "x.npy")
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # the same images (rounding aside)


def test_no_pickle_in_the_logged_model(tmp_path, monkeypatch, store):
    _train_and_evaluate(tmp_path, monkeypatch, "only", seed=1, fid=50.0)
    client = mlflow.tracking.MlflowClient(store)
    version = client.get_model_version(registered_name("digits"), "1")
    local = mlflow.artifacts.download_artifacts(version.source, dst_path=str(tmp_path / "dl"))
    files = {p.suffix for p in __import__("pathlib").Path(local).rglob("*") if p.is_file()}
    assert ".safetensors" in files and ".pkl" not in files and ".pt" not in files


def test_runs_and_model_versions_name_their_setting_and_after_the_report_their_fid(tmp_path, monkeypatch, store):
    """The UI's runs list and model versions tell experiments apart without opening them."""
    _train_and_evaluate(tmp_path, monkeypatch, "tiny-cosine", seed=1, fid=50.0)
    client = mlflow.tracking.MlflowClient(store)
    name = registered_name("digits")
    label = "tiny-cosine · tiny, linear, L_simple, 400 steps"
    assert client.get_model_version(name, "1").description.startswith(f"{label}. train. DVC experiment")
    raw = compose_raw(["profile=tiny"])
    raw["train"] = raw["train"] | {"steps": 400}
    with StageRun("report", raw, "ddpm-digits") as run:
        run.log_dataset("digits-8px-test", str(tmp_path), "0123abcd", "evaluation", {"images": "300"})
        run.log_summary({"FID_train": 55.3469, "NLL_bpd": 4.97})
        parent = client.get_run(run.ids()[2])
    assert parent.info.run_name == f"{label} · FID 55.35"
    # the parent's row shows its data and its model (the runs list's Dataset and Models columns)
    assert [d.dataset.name for d in parent.inputs.dataset_inputs] == ["digits-8px-test"]
    assert {t.key: t.value for t in parent.inputs.dataset_inputs[0].tags}["mlflow.data.context"] == "evaluation"
    # (MLflow's runs list puts a model in the Models column of its source run; the train run logged it)
    (output,) = parent.outputs.model_outputs
    assert client.get_logged_model(output.model_id).source_run_id == parent.info.run_id
    assert client.get_model_version(name, "1").run_id == parent.info.run_id
    (train,) = client.search_runs([parent.info.experiment_id], "tags.dvc_stage = 'train'")
    assert [o.model_id for o in train.outputs.model_outputs] == [output.model_id]
    assert train.data.tags["ddpm.registered_version"] == "1"
    assert client.get_model_version(name, "1").description.startswith(f"{label} · FID 55.35. train. DVC")
    # the versions table's Tags column: the headline numbers, rounded
    tags = client.get_model_version(name, "1").tags
    assert tags["FID_train"] == "55.35" and tags["NLL_bpd"] == "4.97" and "KID" not in tags


def test_runs_the_model_and_its_alias_reach_a_shared_server_and_load_from_its_address(tmp_path, monkeypatch, server):
    """Through a team's server (scripts/mlflow-server.sh: SQL backend, artifacts proxied into the server's folder
    or bucket): pipeline and stage runs, the model versions and the alias are there, and a process that knows only
    the server's address (no storage credentials) loads the best model."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    _train_and_evaluate(tmp_path, monkeypatch, "first", seed=1, fid=50.0)
    _train_and_evaluate(tmp_path, monkeypatch, "second", seed=2, fid=40.0)
    line = promote_best_model("digits", _key())
    assert line.startswith(f"alias {BEST_ALIAS} → ddpm-digits version 2 (FID 40.00")
    client = mlflow.tracking.MlflowClient(server.uri)
    runs = client.search_runs([client.get_experiment_by_name("ddpm-digits").experiment_id])
    roles = sorted((r.data.tags["ddpm.role"], r.data.tags.get("dvc_stage", "")) for r in runs)
    assert roles == [("pipeline", "")] * 2 + [("stage", "evaluate")] * 2 + [("stage", "train")] * 2
    assert str(client.get_model_version_by_alias(registered_name("digits"), BEST_ALIAS).version) == "2"
    assert len(server.stored(".safetensors")) == 2  # stored by the server
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()
    script = (
        "import sys, mlflow; mlflow.set_tracking_uri(sys.argv[1]); "
        "m = mlflow.pyfunc.load_model('models:/ddpm-digits@best_fid'); "
        "print(m.predict({'num_samples': 2, 'seed': 7}).shape)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    cmd = [sys.executable, "-c", script, server.uri]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "(2, 8, 8, 1)", out.stderr[-3000:]


def test_a_registered_model_exports_to_a_diffusers_pipeline_by_its_uri(tmp_path, monkeypatch, store, capsys):
    """`ddpm export --diffusers models:/ddpm-digits@best_fid DIR`: the model's own weights and params.yaml, as
    diffusers' DDPMPipeline.from_pretrained loads them; a model file with the workspace's params does the same."""
    diffusers = pytest.importorskip("diffusers")
    from ddpm.cli.main import main
    from ddpm.storage.model_files import load_model

    params, weights = _train_and_evaluate(tmp_path, monkeypatch, "only", seed=1, fid=50.0)
    promote_best_model("digits", _key())
    assert main(["export", "--diffusers", "models:/ddpm-digits@best_fid", str(tmp_path / "best")]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'best'}/ (diffusers DDPMPipeline")
    pipeline = diffusers.DDPMPipeline.from_pretrained(str(tmp_path / "best"))
    model = load_model(weights, "cpu")
    x, t = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([7])
    with torch.no_grad():
        assert (pipeline.unet(x, t).sample - model(x, t)).abs().max() <= 1e-5
    assert pipeline.scheduler.config.num_train_timesteps == params.timesteps
    file_export = [
        "export",
        "--diffusers",
        str(weights),
        str(tmp_path / "file"),
        "--params",
        str(tmp_path / "only.yaml"),
    ]
    assert main(file_export) == 0 and (tmp_path / "file" / "unet" / "config.json").is_file()
    assert main(file_export) == 1 and "file: already exists; name a new folder" in capsys.readouterr().err
