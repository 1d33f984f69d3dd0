"""scripts/slurm/train.sbatch as SLURM runs it, with stand-ins for `srun` (one task per node of a two-node
allocation), `scontrol`, `dvc` and Python that record what each node would start: node 0 runs the stage through
`dvc exp run` with the node launcher and the job's arguments, node 1 joins it at node 0's address."""

import os
import subprocess
from pathlib import Path

from helpers import ROOT

STANDINS = {
    # srun: drop its options, run the command once per node with that node's SLURM_NODEID
    "srun": 'while [ "${1#--}" != "$1" ]; do shift; done\n'
    'for node in 0 1; do SLURM_NODEID=$node "$@" || exit $?; done\n',
    "scontrol": "echo node-a; echo node-b\n",
    "dvc": 'echo "node $SLURM_NODEID: dvc $*" >> "$RECORD"\n',
    "python": 'echo "node $SLURM_NODEID: python $*" >> "$RECORD"\n',
}


def _standins(folder: Path) -> Path:
    folder.mkdir()
    for name, body in STANDINS.items():
        (folder / name).write_text("#!/usr/bin/env bash\n" + body)
        (folder / name).chmod(0o755)
    return folder


def _job(tmp_path: Path, *args: str, **env: str) -> list[str]:
    record = tmp_path / "record.txt"
    bin_dir = _standins(tmp_path / "bin")
    slurm = {"SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "8"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "NNODES", "NODE_RANK"))}
    full = base | slurm | env | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record)}
    full["PYTHON"] = str(bin_dir / "python")
    res = subprocess.run(
        ["bash", "scripts/slurm/train.sbatch", *args], cwd=ROOT, env=full, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    return record.read_text().splitlines()


def test_node_0_runs_the_stage_through_dvc_with_the_jobs_params_and_node_1_joins_it(tmp_path):
    lines = _job(tmp_path, "-S", "data.shards_url=s3://team-data/shards/cifar10")
    assert lines[0] == (
        "node 0: dvc exp run -S launcher=bash scripts/slurm/launch-node.sh "
        "-S data.shards_url=s3://team-data/shards/cifar10 train"
    )
    launch = "python -m accelerate.commands.launch --multi_gpu --mixed_precision no --dynamo_backend no"
    assert lines[1] == (
        f"node 1: {launch} --num_machines 2 --machine_rank 1 --num_processes 16 "
        "--main_process_ip node-a --main_process_port 29500 pipeline/train.py"
    )


def test_another_stage_runs_the_same_way(tmp_path):
    lines = _job(tmp_path, STAGE="sample")
    assert lines[0] == "node 0: dvc exp run -S launcher=bash scripts/slurm/launch-node.sh sample"
    assert lines[1].endswith(" pipeline/sample.py")
