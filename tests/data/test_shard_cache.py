"""Served shards fetched once per node: every rank and DataLoader worker of a node reads a served shard from the
node's cache, which fetches it with one GET, checks it against the manifest, and serves every later epoch."""

import shutil
from collections import Counter

import pytest
import torch
from helpers.shard_server import serve
from test_corrupt_shards import corrupt

from ddpm.data import remote
from ddpm.data.loader import train_stream
from ddpm.data.shard_cache import cached, node_cache
from ddpm.data.shards import read_manifest, shard_files


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(remote, "RETRY", remote.Retry(attempts=3, backoff=0.01, timeout=5.0))


def cached_batches(folder, url, seed, n, cache=None, workers=0):
    stream = train_stream(folder, 16, seed=seed, shuffle_buffer=50, url=url, workers=workers, cache=cache)
    try:
        return [next(stream) for _ in range(n)]
    finally:
        stream.close()


def test_two_ranks_with_two_workers_each_fetch_every_shard_once_over_three_epochs(digit_shards, tmp_path):
    names = [s["name"] for s in read_manifest(digit_shards)["splits"]["train"]["shards"]]
    images = sum(s["count"] for s in read_manifest(digit_shards)["splits"]["train"]["shards"])
    n = 3 * images // 16 + 1  # into a fourth epoch
    cache = tmp_path / "node-cache"
    with serve(digit_shards) as server:
        streamed = {seed: cached_batches(tmp_path / "none", server.url, seed, n) for seed in (0, 1)}
        server.gets.clear()
        for seed in (0, 1):  # two ranks of one node: their own seeds, one cache
            got = cached_batches(tmp_path / "none", server.url, seed, n, cache=cache, workers=2)
            for (xa, la, ka), (xb, lb, kb) in zip(got, streamed[seed], strict=True):
                assert torch.equal(xa, xb) and torch.equal(la, lb) and ka == kb
        gets = Counter(name for name, _ in server.gets)
    assert {name: gets[name] for name in names} == dict.fromkeys(names, 1)
    assert sorted(p.name for p in cache.glob("*.tar")) == sorted(
        f"{s.sha256}.tar" for s in shard_files(digit_shards, "train")
    )


def test_a_damaged_served_shard_is_named_by_its_url_and_never_enters_the_cache(digit_shards, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(digit_shards, served)
    corrupt(served / "train-000001.tar", "payload")
    cache = tmp_path / "node-cache"
    with serve(served) as server:
        shard = next(
            s for s in shard_files(tmp_path / "none", "train", server.url) if s.path.name == "train-000001.tar"
        )
        with pytest.raises(ValueError) as err:
            cached(shard, cache)
    message = str(err.value)
    assert message.startswith(f"shard {server.url}/train-000001.tar is corrupt: sha256 ") and "\n" not in message
    assert not list(cache.glob("*.tar")) and not list(cache.glob("*.part"))


def test_a_cached_copy_of_the_wrong_size_is_fetched_again(digit_shards, tmp_path):
    cache = tmp_path / "node-cache"
    with serve(digit_shards) as server:
        shard = shard_files(tmp_path / "none", "train", server.url)[0]
        path = cached(shard, cache).path
        path.write_bytes(path.read_bytes()[:1000])  # cut short (a full disk, a killed copy)
        assert cached(shard, cache).path == path
        assert [name for name, _ in server.gets].count(shard.path.name) == 2
    assert path.stat().st_size == shard.size


def test_the_cache_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DDPM_SHARD_CACHE", str(tmp_path / "scratch"))
    assert node_cache() == tmp_path / "scratch"
    monkeypatch.setenv("DDPM_SHARD_CACHE", "off")
    assert node_cache() is None
    monkeypatch.delenv("DDPM_SHARD_CACHE")
    assert node_cache() is not None and node_cache().name == "ddpm-shard-cache"
