"""Run by `accelerate launch` from test_train_distributed on two CPU ranks: train until rank 0 alone gets SIGINT
(at step 5's log); each rank writes the line it stopped with to argv[2]/rank<r>."""

import os
import signal
import sys
from pathlib import Path

from accelerate import PartialState
from helpers.params import make_params

from ddpm.training.loop import train
from ddpm.training.stop import Interrupted

PARAMS = {
    "dataset": "digits",
    "timesteps": 50,
    "data": {"resolution": 8},
    "model": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": []},
    "train": {"steps": 30, "batch_size": 8, "log_every": 5, "checkpoint_every": 20, "shuffle_buffer": 50},
}


def log(metrics, step):  # the main process's log: Ctrl-C reaches rank 0 alone
    if step == 5:
        os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    shards, root = Path(sys.argv[1]), Path(sys.argv[2])
    rank = PartialState(cpu=True).process_index
    try:
        train(make_params(PARAMS), shards, root / "ema.safetensors", root / "checkpoints", log=log)
    except Interrupted as err:
        (root / f"rank{rank}").write_text(str(err))
