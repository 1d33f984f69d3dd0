#!/usr/bin/env bash
# Start this node's processes of a stage that runs on several nodes: one `accelerate launch` per node, joined by
# torch.distributed's rendezvous at node 0. Usage (from the repository root, on every node):
#   scripts/slurm/launch-node.sh pipeline/train.py
# Under SLURM (`srun --ntasks-per-node=1`, see train.sbatch) everything comes from SLURM's variables: SLURM_NNODES,
# SLURM_NODEID, the first host of SLURM_JOB_NODELIST as node 0, SLURM_GPUS_ON_NODE processes per node. Elsewhere,
# or to override: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (default 29500), PROCS_PER_NODE (default: the GPUs
# torch sees). ACCELERATE_USE_CPU=1 runs CPU processes (gloo), as the tests do on one machine.
# As the launcher param of the head node's DVC stage: -S 'launcher=bash scripts/slurm/launch-node.sh'.
set -euo pipefail
PY=${PYTHON:-python}
nnodes=${NNODES:-${SLURM_NNODES:-}}
rank=${NODE_RANK:-${SLURM_NODEID:-}}
if [ -z "$nnodes" ] || [ -z "$rank" ]; then
  echo "error: launch-node.sh: set NNODES and NODE_RANK, or run under srun (SLURM_NNODES, SLURM_NODEID)" >&2
  exit 2
fi
addr=${MASTER_ADDR:-}
if [ -z "$addr" ] && [ -n "${SLURM_JOB_NODELIST:-}" ]; then
  addr=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
fi
if [ -z "$addr" ]; then
  echo "error: launch-node.sh: set MASTER_ADDR (node 0's address), or run under srun (SLURM_JOB_NODELIST)" >&2
  exit 2
fi
per_node=${PROCS_PER_NODE:-${SLURM_GPUS_ON_NODE:-}}
if [ -z "$per_node" ]; then
  per_node=$("$PY" -c 'import torch; print(max(torch.cuda.device_count(), 1))')
fi
exec "$PY" -m accelerate.commands.launch --multi_gpu --mixed_precision no --dynamo_backend no \
  --num_machines "$nnodes" --machine_rank "$rank" --num_processes $((nnodes * per_node)) \
  --main_process_ip "$addr" --main_process_port "${MASTER_PORT:-29500}" "$@"
