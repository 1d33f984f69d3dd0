"""Two CPU ranks (gloo) through Accelerate's debug launcher."""

import numpy as np
import torch
from accelerate import Accelerator, debug_launcher

from ddpm.timesteps import LossAwareSampler
from ddpm.train import record_losses


def _shared_history():
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2
    sampler = LossAwareSampler(4, history=3)
    rank = acc.process_index
    for step in range(6):
        t = torch.tensor([(step + rank) % 4, (step + 2 * rank + 1) % 4])
        losses = torch.tensor([1.0 + rank + step, 10.0 * (rank + 1) + step])  # different on each rank
        record_losses(acc, sampler, t, losses)
    state = torch.from_numpy(np.concatenate([sampler.history.ravel(), sampler.counts.astype(np.float64)]))
    everyone = acc.gather(state[None])
    assert torch.equal(everyone[0], everyone[1]), "ranks hold different loss histories"
    assert sampler.counts.sum() == 4 * 3  # both ranks' 24 losses arrived; each step keeps its last 3


def test_loss_aware_history_is_shared_across_two_ranks():
    debug_launcher(_shared_history, num_processes=2)
