"""Ranks go through the whole training split, each with its own seed: two CPU ranks (gloo, Accelerate's debug
launcher) read different images in equal batch counts, and any number of ranks can share any number of shards,
every shard drawn by some rank and each rank drawing from many."""

import tarfile

from accelerate import Accelerator, debug_launcher
from helpers.params import make_params

from ddpm.data import shards, sources
from ddpm.data.loader import train_stream


def _write(tmp_path, shard_size):
    p = make_params(
        {"dataset": "digits", "data": {"resolution": 8}, "model": {"ch_mult": [1, 2], "attn_resolutions": [4]}}
    )
    out = tmp_path / "digits"
    shards.write_dataset({"train": sources.iter_split(p, "train")}, out, shard_size, {})
    return out


def _two_ranks_loading(shard_dir):
    from accelerate.utils import gather_object

    acc = Accelerator(cpu=True)
    stream = train_stream(shard_dir, 16, seed=3 + acc.process_index, random_flip=False, shuffle_buffer=50)
    keys, batches = [], 0
    for _ in range(40):
        keys += next(stream)[2]
        batches += 1
    key_lists, counts = gather_object([keys]), gather_object([batches])
    assert counts == [40, 40]
    assert key_lists[0] != key_lists[1], "both ranks read the same images in the same order"


def test_two_ranks_read_different_images_in_equal_batch_counts(tmp_path):
    debug_launcher(_two_ranks_loading, args=(_write(tmp_path, 200),), num_processes=2)


def test_eight_ranks_share_five_shards_each_drawing_from_many(tmp_path):
    """Five shards once stopped eight GPUs at once (a rank needed one of its own), and ten split [2, 2, 1, …]
    drew some shards twice as often as others."""
    folder = _write(tmp_path, 300)
    paths = sorted(folder.glob("train-*.tar"))
    assert len(paths) == 5
    shard_of = {}
    for i, path in enumerate(paths):
        with tarfile.open(path) as tar:
            shard_of |= {name.split(".")[0]: i for name in tar.getnames()}
    drawn = []
    for rank in range(8):
        stream = train_stream(folder, 16, seed=100 + rank, random_flip=False, shuffle_buffer=10)
        seen = set()
        for _ in range(60):  # 960 images: about three shards' worth
            seen |= {shard_of[key] for key in next(stream)[2]}
        drawn.append(seen)
    assert all(len(s) >= 2 for s in drawn) and set().union(*drawn) == set(range(5))
