"""Two CPU processes through `accelerate launch`, as a user starts them (fresh processes, gloo)."""

import os
import subprocess
import sys
from pathlib import Path

from . import ROOT


def launch_two_cpu_ranks(script: Path, *args: str, timeout: int = 600) -> None:
    """Run ``script`` (beside its test) on two CPU ranks with ``args``; fail with the ranks' output tails."""
    env = dict(
        os.environ, ACCELERATE_USE_CPU="1", PYTHONPATH=os.pathsep.join([str(script.parent), str(ROOT / "tests")])
    )
    options = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *options, "--dynamo_backend", "no", str(script), *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
