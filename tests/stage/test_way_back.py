"""A refused run puts back what DVC removed or rewrote before the check stage refused it, and DVC's records tell
whether a stage will run (``recorded``): both read from files, as DVC leaves them while its stages run."""

import hashlib

import pytest
import yaml

from ddpm.stage.dvc_records import recorded
from ddpm.stage.way_back import SAVED, put_back, remember_checked

CHECKED = "passed\n"
CHECKED_PARAMS = "# composed by Hydra\nschedule: linear\ntrain:\n  steps: 100\n"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A workspace after a run that passed the check (params.yaml kept, dvc.lock written), then a `dvc exp run -S
    schedule=cosin -S train.steps=5` whose check stage runs: DVC removed checked.txt and rewrote params.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "params.yaml").write_text(CHECKED_PARAMS)
    remember_checked(tmp_path / "params.yaml", tmp_path)
    values = dict(reversed(yaml.safe_load(CHECKED_PARAMS).items()))  # another key order than the file's
    lock = {"stages": {"check": {"cmd": "python pipeline/check.py", "params": {"params.yaml": values}}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    (tmp_path / "params.yaml").write_text("schedule: cosin\ntrain:\n  steps: 5\n")
    for key, value in {"DVC_STAGE": "check", "DVC_ROOT": str(tmp_path), "DVC_EXP_BASELINE_REV": "abc123"}.items():
        monkeypatch.setenv(key, value)
    return tmp_path


def test_a_refused_exp_run_puts_back_the_last_checked_params_byte_for_byte(workspace):
    end = put_back(workspace / "params.yaml", workspace / "checked.txt", CHECKED, workspace)
    assert end == " — the workspace is as before this run (params.yaml back to the last checked schedule, train.steps)"
    assert (workspace / "params.yaml").read_text() == CHECKED_PARAMS  # comments and layout too
    assert (workspace / "checked.txt").read_text() == CHECKED


def test_without_the_kept_bytes_the_values_of_dvc_lock_are_put_back(workspace):
    """After `dvc exp apply` (the lock changed, the kept bytes are another run's) or with none kept."""
    (workspace / SAVED).write_text("schedule: cosine\n")
    put_back(workspace / "params.yaml", workspace / "checked.txt", CHECKED, workspace)
    assert yaml.safe_load((workspace / "params.yaml").read_text()) == yaml.safe_load(CHECKED_PARAMS)
    assert list(yaml.safe_load((workspace / "params.yaml").read_text())) == ["schedule", "train"]  # the file's order


def test_params_edited_for_dvc_repro_are_left_to_the_user(workspace, monkeypatch):
    monkeypatch.delenv("DVC_EXP_BASELINE_REV")
    end = put_back(workspace / "params.yaml", workspace / "checked.txt", CHECKED, workspace)
    assert end == " — every output is as before this run: fix params.yaml and run again"
    assert "cosin" in (workspace / "params.yaml").read_text() and (workspace / "checked.txt").is_file()


@pytest.mark.parametrize("unset", ["DVC_STAGE", "lock"])
def test_outside_dvc_or_before_any_check_nothing_is_touched(workspace, monkeypatch, unset):
    if unset == "lock":
        (workspace / "dvc.lock").unlink()
    else:
        monkeypatch.delenv(unset)
    assert put_back(workspace / "params.yaml", workspace / "checked.txt", CHECKED, workspace) == ""
    assert "cosin" in (workspace / "params.yaml").read_text() and not (workspace / "checked.txt").exists()


def test_a_queued_copy_is_not_the_workspace(workspace, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path_factory.mktemp("elsewhere")))
    assert put_back(workspace / "params.yaml", workspace / "checked.txt", CHECKED, workspace).startswith(
        " — every output is as before"
    )


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - DVC's hash


def test_recorded_finds_the_lock_entry_or_a_run_cache_entry_with_the_same_params_and_files(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"prepare": {"cmd": "python p.py", "params": ["dataset", "data.limit"]}}})
    )
    (tmp_path / "p.py").write_text("print()\n")
    (tmp_path / "params.yaml").write_text("dataset: cifar10\ndata:\n  limit: null\n  url: x\n")

    def entry(dataset: str, script: bytes = b"print()\n") -> dict:
        deps = [{"path": "p.py", "md5": _md5(script)}, {"path": "checked.txt", "md5": _md5(b"ok\n")}]
        return {"cmd": "python p.py", "deps": deps, "params": {"params.yaml": {"dataset": dataset, "data.limit": None}}}

    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"stages": {"prepare": entry("digits")}}))
    assert not recorded("prepare", {"checked.txt": b"ok\n"}, tmp_path)  # the lock holds digits
    run = tmp_path / ".dvc" / "cache" / "runs" / "ab" / "abcd" / "ef"
    run.parent.mkdir(parents=True)
    run.write_text(yaml.safe_dump(entry("cifar10")))
    assert recorded("prepare", {"checked.txt": b"ok\n"}, tmp_path)  # DVC restores it from its run cache
    assert not recorded("prepare", {"checked.txt": b"changed\n"}, tmp_path)
    (tmp_path / "p.py").write_text("print('changed')\n")
    assert not recorded("prepare", {"checked.txt": b"ok\n"}, tmp_path)  # the script changed: it runs
    # a queue worker's copy reads the workspace's cache, named in .dvc/config.local
    copy = tmp_path / "copy"
    (copy / ".dvc").mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        (copy / name).write_text((tmp_path / name).read_text())
    (copy / "p.py").write_text("print()\n")
    (copy / ".dvc" / "config.local").write_text(f"[cache]\ndir = {tmp_path / '.dvc' / 'cache'}\n")
    assert recorded("prepare", {"checked.txt": b"ok\n"}, copy)


def test_floats_as_dvc_writes_them_read_as_floats(tmp_path):
    """DVC writes 1e-06 (YAML 1.2); PyYAML alone reads it as a string, and the lock would never match the file."""
    from ddpm.stage.dvc_records import read_yaml

    (tmp_path / "dvc.lock").write_text("norm_eps: 1e-06\nlr: 2.0e-4\nname: 1e-06x\nsteps: 10\n")
    (tmp_path / "params.yaml").write_text("norm_eps: 1.0e-06\nlr: 0.0002\nname: 1e-06x\nsteps: 10\n")
    assert read_yaml(tmp_path / "dvc.lock") == read_yaml(tmp_path / "params.yaml")
    assert read_yaml(tmp_path / "dvc.lock")["norm_eps"] == 1e-06
