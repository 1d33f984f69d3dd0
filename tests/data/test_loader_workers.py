"""The training stream in epochs, decoded by any number of DataLoader workers: the same batches for 0, 2 and 4
workers, every image once per epoch, and a damaged shard named in one line from a worker as from the process."""

import hashlib
import json
import tarfile
from collections import Counter

import pytest
import torch
from helpers.params import make_params

from ddpm.config import ShardCheck
from ddpm.data import shards, sources
from ddpm.data.loader import train_stream
from ddpm.data.shards import read_manifest


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Digits' training split (1,597 images) in 8 shards of 200 (the last one 197)."""
    p = make_params(
        {"dataset": "digits", "data": {"resolution": 8}, "model": {"ch_mult": [1, 2], "attn_resolutions": [4]}}
    )
    out = tmp_path_factory.mktemp("shards") / "digits"
    shards.write_dataset({"train": sources.iter_split(p, "train")}, out, 200, {})
    return out


def _take(folder, batches: int, workers: int, **kw):
    stream = train_stream(folder, 32, seed=7, shuffle_buffer=300, workers=workers, **kw)
    out = [next(stream) for _ in range(batches)]
    stream.close()
    return out


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")
def test_the_batches_are_the_same_for_0_2_and_4_workers_and_every_image_comes_once_per_epoch(folder):
    count = read_manifest(folder)["splits"]["train"]["count"]
    batches = 2 * count // 32 + 3  # two epochs and a bit
    runs = {w: _take(folder, batches, w) for w in (0, 2, 4)}
    for w in (2, 4):
        for (a, la, ka), (b, lb, kb) in zip(runs[0], runs[w], strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb) and ka == kb, f"{w} workers"
    keys = [k for _, _, batch_keys in runs[0] for k in batch_keys]
    every = set(keys)
    assert len(every) == count
    for epoch in (0, 1):
        seen = Counter(keys[epoch * count : (epoch + 1) * count])
        assert set(seen) == every and set(seen.values()) == {1}, f"epoch {epoch}"
    assert keys[:count] != keys[count : 2 * count]  # each epoch in its own order
    flipped = [img.flip(3) for img, _, _ in runs[0]]
    assert any(not torch.equal(f, img) for f, (img, _, _) in zip(flipped, runs[0], strict=True))


def test_each_seed_has_its_own_order_and_a_batch_mixes_the_shards_of_its_group(folder):
    a = _take(folder, 10, 0)
    stream = train_stream(folder, 32, seed=8, shuffle_buffer=300, workers=0)
    b = [next(stream) for _ in range(10)]
    assert [ks for _, _, ks in a] != [ks for _, _, ks in b]
    shard_of = {}
    for i, shard in enumerate(read_manifest(folder)["splits"]["train"]["shards"]):
        with tarfile.open(folder / shard["name"]) as tar:
            shard_of |= {name.split(".")[0]: i for name in tar.getnames()}
    # shuffle_buffer 300 over shards of 200: two shards shuffled together, so a batch draws from both
    assert all(len({shard_of[k] for k in keys}) == 2 for _, _, keys in a[:6])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_damaged_shard_stops_a_worker_in_the_same_one_line(tmp_path, folder, workers):
    damaged = tmp_path / "digits"
    damaged.mkdir()
    for f in folder.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    data = bytearray((damaged / "train-000003.tar").read_bytes())
    data[2000] ^= 0xFF
    (damaged / "train-000003.tar").write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        _take(damaged, 200, workers, check=ShardCheck.BEFORE)
    expected = hashlib.sha256(bytes(data)).hexdigest()
    message = str(err.value)
    assert message.startswith(f"shard {damaged / 'train-000003.tar'} is corrupt: sha256 {expected}, the manifest says")
    assert "\n" not in message and "Traceback" not in message


def test_a_shard_holding_fewer_images_than_the_manifest_says_is_named(tmp_path, folder):
    other = tmp_path / "digits"
    other.mkdir()
    for f in folder.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["count"] += 1
    manifest["splits"]["train"]["count"] += 1
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"train-000000.tar.* hold \d+ images, the manifest says \d+"):
        _take(other, 200, 0)
