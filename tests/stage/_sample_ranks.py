"""Run by `accelerate launch` from test_sample_store: each rank writes its chunks into argv[1]."""

import sys
from pathlib import Path

from accelerate import Accelerator
from helpers.networks import sampling_setup

from ddpm.parallel import WorkShare
from ddpm.sample_store import clear_stale, sample_chunks

if __name__ == "__main__":
    out_dir, sampler, eta = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2, acc.num_processes
    inference, cfg = sampling_setup(sampler, eta)
    if acc.is_main_process:
        clear_stale(out_dir, "fp")
    acc.wait_for_everyone()
    sample_chunks(inference, cfg, 7, out_dir, WorkShare(acc.process_index, acc.num_processes))
    acc.wait_for_everyone()
