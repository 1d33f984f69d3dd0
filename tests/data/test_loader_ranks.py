"""Two CPU ranks (gloo) through Accelerate's debug launcher read disjoint shards in equal batch counts."""

from accelerate import Accelerator, debug_launcher


def _disjoint_loading(shard_dir):
    from accelerate.utils import gather_object

    from ddpm.data.loader import train_stream

    acc = Accelerator(cpu=True)
    stream = train_stream(
        shard_dir,
        16,
        seed=3,
        rank=acc.process_index,
        world_size=acc.num_processes,
        random_flip=False,
        shuffle_buffer=50,
    )
    keys, batches = set(), 0
    for _ in range(40):
        _, _, k = next(stream)
        keys.update(k)
        batches += 1
    key_sets, counts = gather_object([keys]), gather_object([batches])
    assert counts == [40, 40]
    assert key_sets[0] and key_sets[1] and not key_sets[0] & key_sets[1], "ranks read overlapping images"


def test_two_ranks_read_disjoint_shards_in_equal_batch_counts(tmp_path):
    from helpers.params import make_params

    from ddpm.data import shards, sources

    p = make_params(
        {"dataset": "digits", "data": {"resolution": 8}, "model": {"ch_mult": [1, 2], "attn_resolutions": [4]}}
    )
    out = tmp_path / "digits"
    shards.write_dataset({"train": sources.iter_split(p, "train")}, out, 200, {})
    debug_launcher(_disjoint_loading, args=(out,), num_processes=2)


def test_too_few_shards_for_the_ranks_says_how_to_fix():
    import pytest

    from ddpm.data.loader import rank_shards

    with pytest.raises(ValueError, match="data.shard_size: 1 training shard.* cannot be split over 4 processes"):
        rank_shards(["a.tar"], 0, 4)
