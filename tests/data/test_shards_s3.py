"""Shards in an S3 bucket on a loopback S3 endpoint: `ddpm upload-shards` copies a prepared folder there (checked
first, manifest last); read back (``data.shards_url: s3://…``, through fsspec's s3fs) they give the batches of
the files on disk, each fetched once per node by two ranks with two DataLoader workers each, and the weights of
local shards after training; a damaged or missing object or bucket is one line naming it."""

import re
import shutil

import pytest
import s3fs
from helpers.params import make_params
from helpers.s3 import s3_endpoint
from test_corrupt_shards import corrupt
from test_shard_cache import cached_batches
from test_shards_url import assert_same

from ddpm.cli.main import main
from ddpm.data.loader import train_stream
from ddpm.data.shard_cache import cached
from ddpm.data.shards import read_manifest, shard_files


@pytest.fixture(scope="module")
def endpoint():
    with s3_endpoint() as endpoint, pytest.MonkeyPatch.context() as env:
        for key, value in endpoint.env.items():
            env.setenv(key, value)
        yield endpoint


@pytest.fixture(autouse=True)
def fresh_filesystem():
    """s3fs keeps one client per process for the same options: one made for an earlier endpoint would be reused."""
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def upload(endpoint, folder, bucket: str, prefix: str) -> str:
    """The files of ``folder`` as they are (damaged or not) as objects ``prefix/<name>`` in a new ``bucket``;
    their folder URL."""
    url = endpoint.bucket(bucket)
    client = endpoint.client()
    for path in sorted(folder.iterdir()):
        client.upload_file(str(path), endpoint.buckets[bucket], f"{prefix}/{path.name}")
    return f"{url}/{prefix}"


def test_two_ranks_with_two_workers_each_fetch_every_object_once_and_get_the_batches_of_the_files(
    endpoint, digit_shards, tmp_path
):
    url = f"{endpoint.bucket('shards-once')}/shards/digits"
    assert main(["upload-shards", str(digit_shards), url]) == 0
    names = [s["name"] for s in read_manifest(digit_shards)["splits"]["train"]["shards"]]
    images = sum(s["count"] for s in read_manifest(digit_shards)["splits"]["train"]["shards"])
    n = 3 * images // 16 + 1  # into a fourth epoch
    cache = tmp_path / "node-cache"
    for seed in (0, 1):  # two ranks of one node: their own seeds, one cache
        got = cached_batches(tmp_path / "none", url, seed, n, cache=cache, workers=2)
        assert_same(got, cached_batches(digit_shards, None, seed, n))
    fetched = endpoint.gets(f"{endpoint.buckets['shards-once']}/shards/digits/")
    assert sorted(key.rsplit("/", 1)[1] for key in fetched if key.endswith(".tar")) == sorted(names)
    assert sorted(p.name for p in cache.glob("*.tar")) == sorted(
        f"{s.sha256}.tar" for s in shard_files(digit_shards, "train")
    )


def test_upload_shards_writes_every_shard_before_the_manifest(endpoint, digit_shards, capsys):
    url = f"{endpoint.bucket('shards-order')}/digits"
    assert main(["upload-shards", str(digit_shards), url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"uploaded 5 shards \([\d.]+ MB\) and manifest.json to {re.escape(url)}", out[0])
    assert out[1] == f"train from them with: dvc exp run -S data.shards_url={url}"
    puts = [
        key.rsplit("/", 1)[1]
        for method, key, _ in endpoint.requests
        if method == "PUT" and key.startswith(url.removeprefix("s3://"))
    ]
    assert sorted(puts) == sorted(p.name for p in digit_shards.iterdir()) and puts[-1] == "manifest.json"


def test_upload_shards_refuses_a_damaged_shard_before_writing_anything(endpoint, digit_shards, tmp_path, capsys):
    folder = tmp_path / "digits"
    shutil.copytree(digit_shards, folder)
    corrupt(folder / "train-000001.tar", "payload")
    url = f"{endpoint.bucket('shards-refused')}/digits"
    assert main(["upload-shards", str(folder), url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: ddpm upload-shards: shard {folder / 'train-000001.tar'} is corrupt: sha256 ")
    assert len(err.splitlines()) == 1
    assert endpoint.client().list_objects_v2(Bucket=endpoint.buckets["shards-refused"])["KeyCount"] == 0


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://127.0.0.1:9/shards", "http://127.0.0.1:9/shards/test-000000.tar: http(s) URLs are read-only; "),
        ("s3://no-such-bucket/digits", "s3://no-such-bucket/digits/test-000000.tar: cannot write it ("),
        ("data/elsewhere", "'data/elsewhere' is not a folder URL (s3://bucket/folder, "),
    ],
)
def test_upload_shards_names_a_destination_it_cannot_write(endpoint, digit_shards, capsys, url, message):
    assert main(["upload-shards", str(digit_shards), url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: ddpm upload-shards: {message}") and len(err.splitlines()) == 1, err


def test_a_damaged_object_is_named_in_one_line_and_never_enters_the_cache(endpoint, digit_shards, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(digit_shards, served)
    corrupt(served / "train-000001.tar", "payload")
    url = upload(endpoint, served, "shards-damaged", "digits")
    cache = tmp_path / "node-cache"
    shard = next(s for s in shard_files(tmp_path / "none", "train", url) if s.path.name == "train-000001.tar")
    with pytest.raises(ValueError) as err:
        cached(shard, cache)
    message = str(err.value)
    assert message.startswith(f"shard {url}/train-000001.tar is corrupt: sha256 ") and "\n" not in message
    assert not list(cache.glob("*.tar")) and not list(cache.glob("*.part"))


def test_a_missing_object_is_named_in_one_line_before_any_batch(endpoint, digit_shards, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(digit_shards, served)
    (served / "train-000002.tar").unlink()
    url = upload(endpoint, served, "shards-missing", "digits")
    with pytest.raises(OSError) as err:
        next(train_stream(tmp_path / "none", 16, seed=0, url=url))
    assert re.fullmatch(
        rf"{re.escape(url)}/train-000002\.tar: cannot read it \(no such file or object\)", str(err.value)
    ), err.value


def test_a_bucket_that_does_not_exist_is_named_in_one_line(endpoint, tmp_path):
    with pytest.raises(OSError) as err:
        next(train_stream(tmp_path / "none", 16, seed=0, url="s3://no-such-bucket/digits"))
    assert re.fullmatch(r"s3://no-such-bucket/digits/manifest\.json: cannot read it \(.+\)", str(err.value))


def test_training_from_s3_shards_ends_with_the_weights_of_local_shards(endpoint, tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from helpers.datasets import write_shards

    from ddpm.training.loop import train

    def tiny(url):
        model = {"ch": 32, "ch_mult": [1], "num_res_blocks": 1, "attn_resolutions": []}
        loop = {"batch_size": 8, "steps": 4, "checkpoint_every": 2, "shuffle_buffer": 20, "sample_every": 0}
        return make_params({"model": model, "train": loop, "data": {"shards_url": url}}, profile="tiny")

    shards = write_shards(tiny(None), tmp_path / "digits")
    url = f"{endpoint.bucket('shards-train')}/shards/digits"
    assert main(["upload-shards", str(shards), url]) == 0
    weights = {}
    for where, folder, shards_url in [("local", shards, None), ("s3", tmp_path / "none", url)]:
        try:
            train(
                tiny(shards_url),
                folder,
                tmp_path / f"{where}.safetensors",
                tmp_path / where,
                accelerator=Accelerator(cpu=True),
            )
        finally:
            AcceleratorState._reset_state(reset_partial_state=True)
        weights[where] = (tmp_path / f"{where}.safetensors").read_bytes()
    assert weights["s3"] == weights["local"]
