"""Shards streamed from a URL (``data.shards_url``): a loopback HTTP server (and fsspec's memory store) serving the
digits shards gives the training stream the same batches as the files on disk, the same one-line errors for a
damaged shard, resumes a dropped transfer, and names the URL when it cannot."""

import importlib.util
import json
import re
import shutil

import fsspec
import pytest
import torch
from helpers.params import make_params
from helpers.shard_server import serve
from test_corrupt_shards import SHA, corrupt

from ddpm.config import ParamsError, ShardCheck
from ddpm.data import remote
from ddpm.data.loader import train_stream
from ddpm.data.shards import read_manifest

BATCHES = 30  # 480 images: more than one 400-image shard, so shards are opened several times


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(remote, "RETRY", remote.Retry(attempts=3, backoff=0.01, timeout=5.0))


def batches(folder, url=None, check=ShardCheck.BEFORE, n=BATCHES, seed=0):
    stream = train_stream(folder, 16, seed=seed, shuffle_buffer=50, check=check, url=url)
    return [next(stream) for _ in range(n)]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, la, ka), (xb, lb, kb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(la, lb) and ka == kb


@pytest.fixture(scope="module")
def local(digit_shards):
    return batches(digit_shards)


@pytest.mark.parametrize("check", list(ShardCheck))
@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "no-ranges"])
def test_served_shards_give_the_batches_of_the_files(digit_shards, local, tmp_path, check, ranges):
    nowhere = tmp_path / "no-shards-here"  # a node without the shards reads the served manifest
    with serve(digit_shards, ranges) as server:
        assert_same(batches(nowhere, server.url, check), local)
        assert_same(batches(digit_shards, server.url, check), local)  # the local manifest agrees
        assert "manifest.json" in {name for name, _ in server.gets}


def test_fsspec_urls_give_the_same_batches(digit_shards, local, tmp_path):
    fs = fsspec.filesystem("memory")
    for path in digit_shards.iterdir():
        fs.pipe_file(f"/digits-served/{path.name}", path.read_bytes())
    try:
        assert_same(batches(tmp_path, "memory://digits-served"), local)
    finally:
        fs.rm("/digits-served", recursive=True)


@pytest.mark.parametrize("check", list(ShardCheck))
def test_a_damaged_served_shard_fails_as_the_file_does(digit_shards, tmp_path, check):
    served = tmp_path / "served"
    shutil.copytree(digit_shards, served)
    corrupt(served / "train-000001.tar", "payload")
    with pytest.raises(ValueError) as on_disk:
        batches(served, check=check, n=400)
    with serve(served) as server, pytest.raises(ValueError) as over_http:
        batches(tmp_path / "none", server.url, check, n=400)
    assert "\n" not in str(over_http.value)
    if check is ShardCheck.BEFORE:
        assert re.search(SHA, str(over_http.value))
    url = f"{server.url}/train-000001.tar"
    assert str(over_http.value) == str(on_disk.value).replace(str(served / "train-000001.tar"), url)


def test_a_truncated_served_shard_fails_before_any_batch(digit_shards, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(digit_shards, served)
    corrupt(served / "train-000002.tar", "truncated")
    with serve(served) as server, pytest.raises(ValueError, match=r"train-000002.tar is corrupt: [\d,]+ bytes, the"):
        next(train_stream(tmp_path / "none", 16, seed=0, url=server.url))


@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "no-ranges"])
def test_a_dropped_connection_resumes_where_it_stopped(digit_shards, local, tmp_path, ranges):
    names = [s["name"] for s in read_manifest(digit_shards)["splits"]["train"]["shards"]]
    with serve(digit_shards, ranges) as server:
        for name in names:
            server.cuts[name] = [5000, 20000]  # the first two transfers of every shard break off mid-shard
        assert_same(batches(tmp_path, server.url, ShardCheck.STREAMING), local)
        first = next(name for name, _ in server.gets if name in names)
        resumed = [offset for name, offset in server.gets if name == first]
    # With ranges the second transfer starts at byte 5,000; without, it starts over and skips 5,000 bytes, so
    # the 20,000 bytes it sends before it breaks off end at byte 20,000.
    assert resumed[:3] == ([0, 5000, 25000] if ranges else [0, 5000, 20000])


def test_a_connection_that_keeps_dropping_is_named_after_the_retries(digit_shards, tmp_path):
    with serve(digit_shards) as server:
        for name in read_manifest(digit_shards)["splits"]["train"]["shards"]:
            server.cuts[name["name"]] = [1000] + [0] * 10
        with pytest.raises(OSError) as err:
            batches(tmp_path, server.url)
    message = str(err.value)
    assert re.fullmatch(
        rf"{re.escape(server.url)}/train-00000\d\.tar: the transfer broke off at byte 1,000 of [\d,]+ and 3 tries to "
        r"resume failed \(.+\)",
        message,
    ), message


def test_no_server_is_one_line_naming_the_url(tmp_path):
    url = "http://127.0.0.1:9/shards"  # the discard port: nothing listens
    with pytest.raises(OSError) as err:
        next(train_stream(tmp_path, 16, seed=0, url=url))
    assert re.fullmatch(rf"{re.escape(url)}/manifest\.json: cannot read it after 3 tries \(.+\)", str(err.value))


def test_a_missing_served_file_is_not_retried(digit_shards, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(digit_shards, served)
    (served / "train-000003.tar").unlink()
    with serve(served) as server, pytest.raises(OSError, match=r"train-000003\.tar: cannot read it \(HTTP 404"):
        next(train_stream(tmp_path / "none", 16, seed=0, url=server.url))


def test_a_served_manifest_that_differs_from_the_local_one_is_refused(digit_shards, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(digit_shards, served)
    manifest = read_manifest(served)
    manifest["dataset"] = "other"
    (served / "manifest.json").write_text(json.dumps(manifest))
    with (
        serve(served) as server,
        pytest.raises(ValueError, match=r"^data\.shards_url: http://.+/manifest\.json differs"),
    ):
        next(train_stream(digit_shards, 16, seed=0, url=server.url))


def test_a_scheme_without_its_fsspec_backend_names_the_url():
    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed")
    with pytest.raises(OSError, match=r"^gs://bucket/shards/manifest\.json: .*gcsfs"):
        read_manifest("/nowhere", "gs://bucket/shards")


@pytest.mark.parametrize("bad", ["data/shards", "file:///data/shards", "://x"])
def test_shards_url_must_be_a_url(bad):
    with pytest.raises(ParamsError, match=r"data\.shards_url"):
        make_params({"data": {"shards_url": bad}})


def test_training_from_served_shards_ends_with_the_weights_of_local_shards(tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from helpers.datasets import write_shards

    from ddpm.training.loop import train

    def tiny(url):
        model = {"ch": 32, "ch_mult": [1], "num_res_blocks": 1, "attn_resolutions": []}
        loop = {"batch_size": 8, "steps": 4, "checkpoint_every": 2, "shuffle_buffer": 20, "sample_every": 0}
        return make_params({"model": model, "train": loop, "data": {"shards_url": url}}, profile="tiny")

    shards = write_shards(tiny(None), tmp_path / "digits")
    weights = {}
    with serve(shards) as server:
        for where, folder, url in [("local", shards, None), ("served", tmp_path / "none", server.url)]:
            model = tmp_path / f"{where}.safetensors"
            try:
                train(tiny(url), folder, model, tmp_path / where, accelerator=Accelerator(cpu=True))
            finally:
                AcceleratorState._reset_state(reset_partial_state=True)
            weights[where] = (tmp_path / f"{where}.safetensors").read_bytes()
    assert weights["served"] == weights["local"]
