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


def _disjoint_loading(shard_dir):
    from accelerate.utils import gather_object

    from ddpm.loader import train_stream

    acc = Accelerator(cpu=True)
    stream = train_stream(shard_dir, 16, seed=3, rank=acc.process_index, world_size=acc.num_processes,
                          random_flip=False, shuffle_buffer=50)
    keys, batches = set(), 0
    for _ in range(40):
        _, _, k = next(stream)
        keys.update(k)
        batches += 1
    key_sets, counts = gather_object([keys]), gather_object([batches])
    assert counts == [40, 40]
    assert key_sets[0] and key_sets[1] and not key_sets[0] & key_sets[1], "ranks read overlapping images"


def test_two_ranks_read_disjoint_shards_in_equal_batch_counts(tmp_path):
    from ddpm import datasets, shards
    from ddpm.config import validate_params

    p = validate_params({"dataset": "digits", "data": {"resolution": 8}, "model": {"ch_mult": [1, 2]}})
    out = tmp_path / "digits"
    shards.write_dataset({"train": datasets.iter_split(p, "train")}, out, 200, {})
    debug_launcher(_disjoint_loading, args=(out,), num_processes=2)


def test_too_few_shards_for_the_ranks_says_how_to_fix():
    import pytest

    from ddpm.loader import rank_shards

    with pytest.raises(ValueError, match="data.shard_size: 1 training shard.* cannot be split over 4 processes"):
        rank_shards(["a.tar"], 0, 4)
