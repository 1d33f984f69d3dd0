"""Two nodes, proven on loopback: two node launchers (scripts/slurm/launch-node.sh, given SLURM's variables as
`srun` sets them), one CPU process each (gloo), train the tiny stage to the same weights as one node's two
processes and write each checkpoint once, then sample and evaluate to the same bytes; a node that dies stops the
other in one line naming it, and the rerun resumes to the same weights."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import ROOT, free_port
from helpers.params import compose_raw, merged

TINY = {
    "data": {"shard_size": 800},  # two training shards of the digits
    "model": {"ch": 32, "ch_mult": [1, 2], "attn_resolutions": []},
    "train": {
        "steps": 60,
        "checkpoint_every": 10,
        "keep_checkpoints": 2,
        "batch_size": 16,
        "log_every": 1,
        "sample_every": 100,
        "shuffle_buffer": 100,
        "warmup": 1,
    },
    # sampling and evaluation in several chunks and batches per process
    "sample": {"num_samples": 32, "chunk_size": 8, "batch_size": 8},
    "fid": {"max_images": 24, "batch_size": 8},
    "evaluate": {"nll_images": 8, "nll_batch_size": 4},
}
COST = {"peak_host_memory_gib", "peak_accelerator_memory_gib"}  # with the *_seconds: of the run, not the model
LAUNCH_NODE = str(ROOT / "scripts" / "slurm" / "launch-node.sh")


def _env(cwd: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHON": sys.executable,
        **extra,
    }


def _stage(cwd: Path, stage: str, *launcher: str) -> subprocess.CompletedProcess:
    cmd = [*(launcher or [sys.executable]), str(ROOT / "pipeline" / f"{stage}.py")]
    return subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=600)


def _start_nodes(cwd: Path, stage: str = "train") -> list[subprocess.Popen]:
    """Node 0 and node 1 as `srun --ntasks-per-node=1 scripts/slurm/launch-node.sh pipeline/<stage>.py` starts
    them on a two-node allocation (here both on 127.0.0.1)."""
    port = str(free_port())
    nodes = []
    for node in (0, 1):
        slurm = {"SLURM_NNODES": "2", "SLURM_NODEID": str(node), "SLURM_GPUS_ON_NODE": "1"}
        env = _env(cwd, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, **slurm)
        nodes.append(
            subprocess.Popen(
                ["bash", LAUNCH_NODE, str(ROOT / "pipeline" / f"{stage}.py")],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return nodes


def _finish(nodes: list[subprocess.Popen], timeout: float = 600) -> list[tuple[int, str, str]]:
    out = []
    for node in nodes:
        stdout, stderr = node.communicate(timeout=timeout)
        out.append((node.returncode, stdout, stderr))
    return out


def _checkpoints(cwd: Path) -> list[str]:
    return sorted(p.name for p in (cwd / "checkpoints").glob("*/step-*"))


def _copy_workspace(src: Path, dst: Path) -> Path:
    dst.mkdir()
    shutil.copy2(src / "params.yaml", dst / "params.yaml")
    shutil.copytree(src / "data", dst / "data")
    return dst


@pytest.fixture(scope="module")
def one_node(tmp_path_factory):
    """The tiny data prepared, then trained by one node's two processes (the reference)."""
    ws = tmp_path_factory.mktemp("nodes") / "one"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(merged(compose_raw(["profile=tiny"]), TINY)))
    prepared = _stage(ws, "prepare")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    trained = _stage(ws, "train", *_two_ranks())
    assert trained.returncode == 0, trained.stderr[-3000:]
    return ws


def _two_ranks() -> list[str]:
    """One node's two CPU processes (conf/accelerate/cpu_2proc.yaml)."""
    two_ranks = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    return two_ranks + [str(ROOT / "conf" / "accelerate" / "cpu_2proc.yaml"), "--main_process_port", str(free_port())]


@pytest.fixture(scope="module")
def one_node_evaluated(one_node, tmp_path_factory):
    """A copy of the trained workspace with its FID references (one process), then sampled and evaluated by one
    node's two processes (the reference for two nodes)."""
    ws = tmp_path_factory.mktemp("evaluated") / "one"
    shutil.copytree(one_node, ws, ignore=shutil.ignore_patterns("checkpoints", "mlflow.db"))
    for stage, launcher in [("fid_ref", []), ("sample", _two_ranks()), ("evaluate", _two_ranks())]:
        done = _stage(ws, stage, *launcher)
        assert done.returncode == 0, done.stderr[-3000:]
    return ws


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _scores(ws: Path) -> dict:
    """What the evaluate stage measured, without what it cost (time, memory)."""
    metrics = json.loads((ws / "metrics" / "evaluate.json").read_text())
    return {key: value for key, value in metrics.items() if key not in COST and not key.endswith("_seconds")}


def test_two_nodes_train_the_weights_of_one_node_and_write_each_checkpoint_once(one_node, tmp_path):
    ws = _copy_workspace(one_node, tmp_path / "two")
    (node0, out0, err0), (node1, _, err1) = _finish(_start_nodes(ws))
    assert node0 == 0 and node1 == 0, err0[-3000:] + err1[-3000:]
    assert (ws / "models" / "ema.safetensors").read_bytes() == (one_node / "models" / "ema.safetensors").read_bytes()
    assert _checkpoints(ws) == _checkpoints(one_node) == ["step-000000050", "step-000000060"]
    assert "num_processes" in (ws / "metrics" / "train.json").read_text()


def test_two_nodes_sample_and_evaluate_to_the_bytes_of_one_node(one_node_evaluated, tmp_path):
    ws = tmp_path / "two"
    shutil.copytree(one_node_evaluated, ws, ignore=shutil.ignore_patterns("outputs", "metrics", "mlflow.db"))
    for stage in ("sample", "evaluate"):
        (node0, _, err0), (node1, _, err1) = _finish(_start_nodes(ws, stage))
        assert node0 == 0 and node1 == 0, stage + err0[-3000:] + err1[-3000:]
    one = one_node_evaluated
    assert _files(ws / "outputs") == _files(one / "outputs")  # the samples' chunks, grid and rate-distortion rows
    assert _scores(ws) == _scores(one)
    assert (
        _scores(ws)["num_samples"] == 32
        and json.loads((ws / "metrics" / "sample.json").read_text())["num_processes"] == 2
    )


def test_a_dead_node_stops_the_other_in_one_line_and_the_rerun_resumes_to_the_same_weights(one_node, tmp_path):
    ws = _copy_workspace(one_node, tmp_path / "killed")
    nodes = _start_nodes(ws)
    deadline = time.monotonic() + 300
    while not _checkpoints(ws) and time.monotonic() < deadline and nodes[0].poll() is None:
        time.sleep(0.2)
    assert _checkpoints(ws), "no checkpoint was written before the kill"
    node1 = psutil.Process(nodes[1].pid)
    for process in [node1, *node1.children(recursive=True)]:  # node 1 dies mid-run: its launcher and its worker
        process.send_signal(signal.SIGKILL)
    (node0, _, err0), _ = _finish(nodes, timeout=120)  # stopped within 2 minutes, not hanging
    assert node0 != 0
    assert _checkpoints(ws)[-1] < "step-000000060"  # the kill landed mid-stage
    lines = [line for line in err0.splitlines() if line.startswith("error: train:")]
    assert lines and "lost contact with" in lines[0] and "127.0.0.1" in lines[0], err0[-3000:]
    assert (ws / "models" / "ema.safetensors").exists() is False
    (node0, out0, err0), (node1, _, err1) = _finish(_start_nodes(ws))
    assert node0 == 0 and node1 == 0, err0[-3000:] + err1[-3000:]
    assert "train: resuming from" in out0
    assert (ws / "models" / "ema.safetensors").read_bytes() == (one_node / "models" / "ema.safetensors").read_bytes()


def _disagree():
    from accelerate.state import AcceleratorState

    from ddpm.stage.placement import Placement

    AcceleratorState._reset_state(reset_partial_state=True)  # a forked rank: not the parent's single process
    placement = Placement.start()
    placement.agree("params.yaml", b"same")
    placement.agree("params.yaml", f"rank {placement.state.process_index}".encode())


def test_processes_that_read_different_params_refuse_to_run_together():
    from accelerate import debug_launcher

    with pytest.raises(Exception, match=r"params.yaml of process 1 \(on .+\) differs from process 0's"):
        debug_launcher(_disagree, num_processes=2)


def test_the_node_launcher_names_what_it_lacks():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "NNODES", "NODE_RANK", "MASTER_"))}
    res = subprocess.run(["bash", LAUNCH_NODE, "pipeline/train.py"], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("error: launch-node.sh: set NNODES and NODE_RANK")
    res = subprocess.run(
        ["bash", LAUNCH_NODE, "pipeline/train.py"],
        env=env | {"NNODES": "2", "NODE_RANK": "1"},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "set MASTER_ADDR" in res.stderr
