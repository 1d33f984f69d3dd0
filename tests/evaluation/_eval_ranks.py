"""Run by `accelerate launch` from test_sharding: each rank takes its share of the NLL's batches, the Inception
batches and a DDIM cell's chunks; rank 0 writes what the group computed to argv[1] (an .npz)."""

import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from helpers.sharding import sharded_evaluation

from ddpm.parallel import WorkShare

if __name__ == "__main__":
    out, reference = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)  # as the one-process run: a float reduction's order depends on the thread count
    state = PartialState(cpu=True)
    assert state.num_processes == 2, state.num_processes
    results = sharded_evaluation(reference, WorkShare(state.process_index, state.num_processes))
    if state.is_main_process:
        np.savez(out, **results)
