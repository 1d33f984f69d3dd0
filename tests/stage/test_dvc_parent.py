"""A stage does not outlive the `dvc` that runs it: it finds its nearest `dvc` ancestor and, once that process is
gone (SIGTERM to `dvc` alone), sends itself SIGTERM, which training turns into a stop after its step."""

import subprocess
import sys
import time

STAGE = """
import sys, time
from ddpm.processes import dvc_ancestor
from ddpm.stage.dvc_parent import stop_with_dvc
from ddpm.training.stop import StopRequest
out = open(sys.argv[1], "w")
found = dvc_ancestor()
print("ancestor", found is not None, flush=True, file=out)
stop_with_dvc("train")
with StopRequest() as stop:
    deadline = time.monotonic() + 60
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(0.05)
print("stopped by", stop.received.name if stop.received else None, flush=True, file=out)
"""

FAKE_DVC = """#!{python}
# stands in for `dvc repro`: starts the stage, then ends (as `dvc` killed with SIGTERM does) without waiting
import os, pathlib, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", {stage!r}, sys.argv[1]], env=dict(os.environ, DVC_STAGE="train"))
out = pathlib.Path(sys.argv[1])
while not (out.exists() and "ancestor" in out.read_text()):  # the stage has looked for its dvc
    time.sleep(0.05)
time.sleep(0.5)
"""


def test_a_stage_whose_dvc_ends_stops_itself(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dvc = bin_dir / "dvc"
    dvc.write_text(FAKE_DVC.format(python=sys.executable, stage=STAGE))
    dvc.chmod(0o755)
    out = tmp_path / "stage.out"
    subprocess.run([str(dvc), str(out)], check=True, timeout=60)
    deadline = time.monotonic() + 60
    while "stopped" not in (out.read_text() if out.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.read_text().splitlines() == ["ancestor True", "stopped by SIGTERM"]


def test_outside_dvc_nothing_is_watched(monkeypatch):
    from ddpm.stage import dvc_parent

    monkeypatch.delenv("DVC_STAGE", raising=False)
    started = []
    monkeypatch.setattr(dvc_parent, "watch", lambda *a: started.append(a))
    dvc_parent.stop_with_dvc("train")
    assert started == []
