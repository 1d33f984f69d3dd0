"""The workspace's default profile (``ddpm profile``): what `dvc exp run -S key=value` composes once it is set,
as DVC itself composes it, and that it stays out of git."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import compose_and_dump
from helpers import ROOT
from helpers.params import compose_raw

from ddpm.cli.profile import LOCAL, current, main, set_profile

DDPM = str(Path(sys.executable).parent / "ddpm")


@pytest.fixture
def conf(tmp_path):
    shutil.copytree(ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("workspace.yaml"))
    return tmp_path / "conf"


def dvc_composes(conf: Path, overrides: list[str]) -> dict:
    """params.yaml as `dvc exp run -S ...` writes it (DVC's own Hydra call, as for workspace, queued and --temp
    runs)."""
    out = conf.parent / "params.yaml"
    compose_and_dump(str(out), str(conf), None, "config", str(conf.parent), overrides)
    return yaml.safe_load(out.read_text())


def test_a_set_profile_is_what_a_bare_override_varies_and_an_explicit_profile_still_wins(conf):
    assert current(conf) == "cifar10_ddpm" and dvc_composes(conf, ["schedule=cosine"])["dataset"] == "cifar10"
    set_profile("tiny", conf)
    assert current(conf) == "tiny"
    assert dvc_composes(conf, ["schedule=cosine"]) == compose_raw(["profile=tiny", "schedule=cosine"])
    assert dvc_composes(conf, ["profile=iddpm_cifar10"]) == compose_raw(["profile=iddpm_cifar10"])


def test_the_command_refuses_an_unknown_profile_writes_nothing_and_resets(conf, capsys):
    assert main(["nosuch"], conf) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: profile 'nosuch' is not one of conf/profile/: ") and "tiny" in err
    assert not (conf / LOCAL).exists()
    assert main(["tiny"], conf) == 0 and "profile: tiny" in capsys.readouterr().out
    assert main(["--reset"], conf) == 0 and not (conf / LOCAL).exists()
    assert capsys.readouterr().out.startswith("profile: cifar10_ddpm (the committed default)")


def test_the_workspace_profile_is_ignored_by_git_and_runs_from_the_console_script(tmp_path):
    ignored = subprocess.run(["git", "check-ignore", "-q", "conf/local/workspace.yaml"], cwd=ROOT)
    assert ignored.returncode == 0
    out = subprocess.run([DDPM, "profile"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: ddpm profile: conf/config.yaml not found")
