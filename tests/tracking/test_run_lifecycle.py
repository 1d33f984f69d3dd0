"""No run left RUNNING by a dead process, a rerun under its own pipeline run, and a damaged store named as such:
its log kept, a replay into it refused in one line, a replay into a restored store filed where the live run would
have gone."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
import yaml
from helpers import ROOT
from helpers.params import compose_raw

from ddpm import processes
from ddpm.tracking.runs import RunContext, StageRun, pipeline_key

DDPM = str(Path(sys.executable).parent / "ddpm")  # the console script of this environment

KILLED_STAGE = textwrap.dedent("""
    import os, signal
    from ddpm.tracking.runs import StageRun
    with StageRun("train", {"profile": "tiny", "dataset": "digits"}, "ddpm-life") as run:
        print(run.run_id, run.parent_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def _store(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key in ("DDPM_PIPELINE_RUN", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    mlflow.set_tracking_uri(uri)
    return uri


def test_a_killed_stage_is_closed_as_killed_by_the_next_stage_and_a_rerun_gets_its_own_pipeline_run(
    tmp_path, monkeypatch
):
    _store(tmp_path, monkeypatch)
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-linear")  # as a queued experiment: re-queued under the same name
    res = subprocess.run(
        [sys.executable, "-c", KILLED_STAGE],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"DDPM_PIPELINE_RUN": "exp:tiny-linear::111:222"},
    )
    assert res.returncode == -signal.SIGKILL
    child, parent = res.stdout.split()
    client = mlflow.tracking.MlflowClient()
    assert client.get_run(child).info.status == "RUNNING"  # what the killed process left
    tags = client.get_run(child).data.tags
    assert tags["ddpm.host"] == processes.HOST and tags["ddpm.pid"] == tags["ddpm.process"].split(":")[0]
    with StageRun("train", {"profile": "tiny", "dataset": "digits"}, "ddpm-life") as rerun:
        pass
    assert client.get_run(child).info.status == "KILLED" and client.get_run(parent).info.status == "KILLED"
    assert client.get_run(child).info.end_time is not None
    assert rerun.parent_id != parent and client.get_run(rerun.parent_id).info.status == "FINISHED"
    assert client.get_run(rerun.run_id).info.status == "FINISHED"


def test_a_pipeline_is_running_while_a_stage_runs_and_failed_when_a_stage_stops_before_its_run(
    tmp_path, monkeypatch, capsys
):
    """The runs list never shows an unfinished pipeline FINISHED: each stage puts its pipeline run back to RUNNING,
    and a stage refused before its own run starts (here: params.yaml) marks it FAILED."""
    from ddpm.stage.harness import stage_main

    _store(tmp_path, monkeypatch)
    monkeypatch.setenv("DDPM_PIPELINE_RUN", "dvc:4242:77")
    params = compose_raw(["profile=tiny"])
    with StageRun("prepare", params, "ddpm-digits") as first:
        pass
    client = mlflow.tracking.MlflowClient()
    assert client.get_run(first.parent_id).info.status == "FINISHED"

    def body(params, paths, run):
        assert client.get_run(first.parent_id).info.status == "RUNNING"

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage_main("train", body, params_path=str(tmp_path / "params.yaml"))
    assert client.get_run(first.parent_id).info.status == "FINISHED"

    capsys.readouterr()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params | {"schedule": "cosin"}))
    with pytest.raises(SystemExit) as stop:
        stage_main("sample", body, params_path=str(tmp_path / "params.yaml"))
    assert stop.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "schedule" in line and "cosin" in line
    assert client.get_run(first.parent_id).info.status == "FAILED"
    stage_runs = client.search_runs([client.get_run(first.run_id).info.experiment_id])
    assert len(stage_runs) == 3  # the pipeline run, prepare and train: the refused stage opened none


def test_one_experiment_name_run_by_two_dvc_processes_is_two_pipeline_runs(monkeypatch):
    monkeypatch.delenv("DDPM_PIPELINE_RUN", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-linear")
    assert pipeline_key("100:5") != pipeline_key("200:9")
    assert pipeline_key("100:5") == pipeline_key("100:5")


def test_a_live_process_is_alive_and_a_finished_one_is_not():
    assert processes.alive(processes.identity())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = processes.identity(proc.pid)
    proc.wait()
    assert not processes.alive(gone)
    assert processes.alive("12345:")  # no start time recorded: never judged dead on a guess


def _damage(db) -> None:
    """Truncate a SQLite file to half its size, as a crash or a full disk can."""
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2)


def test_an_empty_store_file_is_named_damaged_not_replaced_by_a_new_store(tmp_path, monkeypatch, capsys):
    """A zero-byte mlflow.db (a truncation, a failed copy) would open in SQLite as a new, empty store with every
    earlier run out of sight: a stage names it damaged, keeps its log aside and leaves the file as it was; the
    report's query of the runs says the store is unavailable."""
    from ddpm.stage.harness import stage_main
    from ddpm.tracking.queries import evaluated_runs

    uri = _store(tmp_path, monkeypatch)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_raw(["profile=tiny"])))
    (tmp_path / "mlflow.db").write_bytes(b"")
    monkeypatch.setenv("DVC_STAGE", "report")
    stage_main("report", lambda params, paths, run: run.log_metrics({"x": 1.0}), str(tmp_path / "params.yaml"))
    [warning] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warning.startswith(
        f"warning: the MLflow store at {uri} is damaged (file is not a database: {tmp_path / 'mlflow.db'} is empty "
        "(0 bytes); restore it, or delete it if it never held a store)"
    )
    assert (tmp_path / "mlflow.db").stat().st_size == 0 and list((tmp_path / "mlflow-pending").glob("*.jsonl"))
    runs, note = evaluated_runs("digits")
    assert runs == [] and "MLflow runs unavailable" in note and (tmp_path / "mlflow.db").stat().st_size == 0


def test_a_damaged_store_is_named_the_log_kept_and_replayed_where_it_belongs(tmp_path, monkeypatch, capsys):
    from ddpm.stage.harness import stage_main

    uri = _store(tmp_path, monkeypatch)
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-cosine")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_raw(["profile=tiny"])))
    for i in range(30):  # a store with some history, then damaged
        with StageRun("prepare", {"profile": "tiny", "dataset": "digits", "i": i}, "ddpm-digits"):
            pass
    _damage(tmp_path / "mlflow.db")

    def cell(params, paths, run):
        run.log_metrics({"fid": 123.5, "nfe": 10})

    monkeypatch.setenv("DVC_STAGE", "solver_fid@unipc_3-10")
    stage_main("solver_fid", cell, params_path=str(tmp_path / "params.yaml"))
    [pending] = sorted((tmp_path / "mlflow-pending").glob("*.jsonl"))
    [warning] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warning.startswith(
        f"warning: the MLflow store at {uri} is damaged (database disk image is malformed): "
        f"restore it or set MLFLOW_TRACKING_URI; this stage's log is kept in {pending}"
    )

    for key in ("DVC_EXP_NAME", "DVC_STAGE"):  # a replay later, from a plain shell
        monkeypatch.delenv(key)
    res = subprocess.run(
        [DDPM, "replay", str(pending)], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert res.returncode == 1  # into the still-damaged store: one line, the file kept for the next try
    assert res.stderr.strip().splitlines() == [
        f"error: spool: the MLflow store at {uri} is damaged (database disk image is malformed): restore it or set "
        f"MLFLOW_TRACKING_URI; {pending} was not sent"
    ]
    assert pending.exists()

    for db in tmp_path.glob("mlflow.db*"):  # restored: here, a fresh store
        db.unlink()
    res = subprocess.run(
        [DDPM, "replay", str(pending)], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert res.returncode == 0, res.stderr
    mlflow.set_tracking_uri(uri + "?fresh")  # the store re-read from disk (a new engine)
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    child = runs[runs["tags.ddpm.role"] == "stage"].iloc[0]
    parent = runs[runs["tags.ddpm.role"] == "pipeline"].iloc[0]
    assert child["tags.mlflow.runName"] == "solver_fid@unipc_3-10 · tiny-cosine"
    assert child["tags.dvc_experiment"] == "tiny-cosine" and child["tags.dvc_stage"] == "solver_fid@unipc_3-10"
    assert child["tags.mlflow.parentRunId"] == parent["run_id"] and parent["tags.dvc_experiment"] == "tiny-cosine"
    assert child["params.solver_table.spacing"] == "auto" and child["params.sample.batch_size"] == "128"
    assert child["metrics.fid"] == 123.5 and child["tags.ddpm.replayed"] == "true"
    assert parent["params.train.lr"] == "0.001"  # the parent, re-created, carries every param again


def test_replay_of_a_file_that_is_not_a_spool_file_is_one_line(tmp_path, monkeypatch, capsys):
    from ddpm.cli.main import main as ddpm

    _store(tmp_path, monkeypatch)
    bogus = tmp_path / "x.jsonl"
    bogus.write_text(json.dumps({"op": "log_metrics"}) + "\n")
    assert ddpm(["replay", str(bogus)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: spool: {bogus} was not sent (ValueError: spool: {bogus} is not a pending")


def test_run_context_is_recorded_from_dvcs_environment(monkeypatch):
    monkeypatch.delenv("DDPM_PIPELINE_RUN", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    monkeypatch.setenv("DVC_STAGE", "ddim_fid@10-0.0")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc")
    ctx = RunContext.current("ddim_fid")
    assert (ctx.dvc_experiment, ctx.dvc_stage, ctx.git_commit) == ("exp-a", "ddim_fid@10-0.0", "abc")
    assert ctx.pipeline_key.startswith("exp:exp-a:abc:")


@pytest.fixture(autouse=True)
def _fresh_store_cache():
    from ddpm.tracking import store as tracking

    tracking._prepared.clear()
    yield
    tracking._prepared.clear()


def test_params_changed_by_another_run_mid_pipeline_are_put_back(tmp_path, monkeypatch, capsys):
    """A second `dvc exp run` in the workspace rewrites params.yaml before DVC's lock refuses it: the running
    pipeline's next stage (or the running stage, at its end) puts back the params the pipeline started with."""
    from ddpm.stage import workspace

    (tmp_path / ".dvc").mkdir()
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  lr: 0.001\n")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # stands for the `dvc exp run` process, gone later
    driver = processes.identity(proc.pid)
    monkeypatch.setattr(workspace, "dvc_ancestor", lambda: driver)
    workspace.hold_params(params, "check", cwd=tmp_path)  # the execution's first stage
    proc.wait()
    workspace.hold_params(params, "prepare", cwd=tmp_path)
    assert capsys.readouterr().err == ""
    params.write_text("train:\n  lr: 0.003\n")  # the other run
    workspace.hold_params(params, "train", cwd=tmp_path)
    assert params.read_text() == "train:\n  lr: 0.001\n"
    [kept] = (tmp_path / workspace.FOLDER).glob("replaced-*-train.yaml")
    assert kept.read_text() == "train:\n  lr: 0.003\n"
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"warning: train: {params} changed while this pipeline ran (another `dvc exp run` in this "
        f"workspace?); put back this pipeline's params, the other file is kept as {kept}."
    )
    monkeypatch.setattr(workspace, "dvc_ancestor", processes.identity)  # the next execution: a fresh start
    params.write_text("train:\n  lr: 0.004\n")
    workspace.hold_params(params, "check", cwd=tmp_path)
    assert params.read_text() == "train:\n  lr: 0.004\n" and capsys.readouterr().err == ""
    snapshots = sorted(p.name for p in (tmp_path / workspace.FOLDER).glob("*.yaml") if "replaced" not in p.name)
    assert snapshots == [processes.identity().replace(":", "-") + ".yaml"]  # the dead execution's one is gone


def test_every_tracker_method_is_logged_to_mlflow_and_to_the_spool():
    """The base Tracker logs nothing: a tracker that forgot a method would drop that log silently."""
    from ddpm.tracking.spool import ResilientRun
    from ddpm.tracking.tracker import OPS

    assert len(OPS) >= 10
    for cls in (StageRun, ResilientRun):
        assert [op for op in OPS if op not in vars(cls)] == [], cls.__name__


def test_params_rewritten_before_the_first_stage_are_put_back_as_the_run_asked(tmp_path, monkeypatch, capsys):
    """A second `dvc exp run` started a second after the first composes its params.yaml (and DVC's experiment
    records) before the first's first stage can claim the workspace: that stage composes what its own `dvc exp run
    -S …` asked for, puts it back and stops the run before any work, in one line (DVC could not save it)."""
    import shutil

    from dvc.utils.hydra import compose_and_dump

    from ddpm.stage import workspace

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[hydra]\n    enabled = true\n")
    params = tmp_path / "params.yaml"

    def composed(*overrides: str) -> bytes:
        compose_and_dump(params, str(tmp_path / "conf"), None, "config", str(tmp_path), list(overrides))
        return params.read_bytes()

    ours, theirs = composed("profile=tiny", "train.lr=0.002"), composed("profile=tiny", "train.lr=0.003")
    fake = tmp_path / "bin" / "dvc"  # stands for the first `dvc exp run`, by its command line
    fake.parent.mkdir()
    fake.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(fake), "exp", "run", "-S", "profile=tiny", "-S", "train.lr=0.002"])
    try:
        monkeypatch.setattr(workspace, "dvc_ancestor", lambda: processes.identity(proc.pid))
        with pytest.raises(workspace.WorkspaceBusy) as err:
            workspace.hold_params(params, "check", cwd=tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert params.read_bytes() == ours
    [kept] = (tmp_path / workspace.FOLDER).glob("replaced-*-check.yaml")
    assert kept.read_bytes() == theirs
    assert str(err.value).startswith(
        f"another `dvc exp run` started in the same seconds rewrote {params} (its file is kept as {kept})"
    )


def test_the_overrides_of_a_workspace_exp_run_and_of_no_other_command():
    from ddpm.stage.asked_params import overrides

    dvc = ["/venv/bin/python", "/venv/bin/dvc"]
    assert overrides([*dvc, "exp", "run", "-S", "a=1", "--set-param=b=2", "-Sc=3", "-n", "x", "train"]) == [
        "a=1",
        "b=2",
        "c=3",
    ]
    assert overrides([*dvc, "exp", "run", "-S", "other.yaml:a=1"]) == []  # another params file: not composed
    assert overrides([*dvc, "exp", "run", "--queue", "-S", "a=1"]) is None  # runs in a copy
    assert overrides([*dvc, "repro", "train"]) is None
