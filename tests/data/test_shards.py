import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.datasets import cifar_folder_tarball, cifar_pickle_tarball
from helpers.params import make_params

from ddpm.core.images import to_model_range, to_uint8
from ddpm.data import shards, sources
from ddpm.data.loader import iter_batches, train_stream


def digits_params(**data):
    return make_params(
        {
            "dataset": "digits",
            "data": {"resolution": 8, "shard_size": 500} | data,
            "model": {"ch_mult": [1, 2], "attn_resolutions": [4]},
        }
    )


def write(params, out):
    meta = {"dataset": params.dataset.value, "source_fingerprint": sources.source_fingerprint(params)}
    return shards.write_dataset(
        {s: sources.iter_split(params, s) for s in sources.SPLITS}, out, params.data.shard_size, meta
    )


def digest_tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_digits_shards_are_byte_identical_across_runs(tmp_path):
    p = digits_params()
    m = write(p, tmp_path / "a")
    write(p, tmp_path / "b")
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    assert m["splits"]["train"]["count"] == 1497 and m["splits"]["test"]["count"] == 300
    assert [s["count"] for s in m["splits"]["train"]["shards"]] == [500, 500, 497]
    assert m["splits"]["train"]["shape"] == [8, 8, 1]
    for s in m["splits"]["train"]["shards"]:
        data = (tmp_path / "a" / s["name"]).read_bytes()
        assert (s["bytes"], s["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_loader_roundtrips_pixels_and_ranges(tmp_path):
    p = digits_params()
    write(p, tmp_path / "d")
    first = next(iter_batches(tmp_path / "d", "test", 300))
    reference = np.stack([img for _, img, _ in sources.iter_split(p, "test")])
    np.testing.assert_array_equal(first.permute(0, 2, 3, 1).numpy(), reference)
    x = to_model_range(first)
    assert x.shape == (300, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(to_uint8(x), first.permute(0, 2, 3, 1))
    xb, labels, keys = next(train_stream(tmp_path / "d", 64, seed=0))
    assert xb.shape == (64, 1, 8, 8) and labels.shape == (64,) and len(keys) == 64
    assert sum(b.shape[0] for b in iter_batches(tmp_path / "d", "train", 100, limit=250)) == 250


def test_cifar10_pickle_and_folder_sources(tmp_path):
    for tarball in (cifar_pickle_tarball(tmp_path / "py.tar.gz"), cifar_folder_tarball(tmp_path / "jpg.tar.gz")):
        p = make_params({"dataset": "cifar10", "data": {"source": str(tarball), "shard_size": 3}})
        m = write(p, tmp_path / tarball.name.split(".")[0])
        n_train = 20 if "py" in tarball.name else 4
        assert m["splits"]["train"]["count"] == n_train and m["splits"]["train"]["shape"] == [32, 32, 3]
        assert len(m["splits"]["train"]["shards"]) == -(-n_train // 3)
        assert m["source_fingerprint"].startswith(tarball.name)


def test_missing_cifar_source_names_the_path(tmp_path):
    p = make_params({"dataset": "cifar10", "data": {"source": str(tmp_path / "none.tar.gz")}})
    with pytest.raises(FileNotFoundError, match=r"data.source: .*none.tar.gz not found; point it at cifar-10-python"):
        sources.check_source(p)
    with pytest.raises(FileNotFoundError, match="data.source: not set for dataset cifar10 and data.download is false"):
        sources.check_source(make_params({"dataset": "cifar10", "data": {"download": False}}))


def test_failed_write_leaves_previous_shards_and_no_partial_folder(tmp_path):
    out = tmp_path / "shards"
    write(digits_params(), out)
    before = digest_tree(out)
    bad = make_params(
        {
            "dataset": "cifar10",
            "data": {"source": str(cifar_folder_tarball(tmp_path / "c.tar.gz", corrupt="train/cat/0001.jpg"))},
        }
    )
    with pytest.raises(ValueError, match=r"c.tar.gz: train/cat/0001.jpg: cannot decode image"):
        write(bad, out)
    assert digest_tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz", "shards"]


def test_empty_split_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="split 'train' is empty"):
        shards.write_dataset({"train": iter(())}, tmp_path / "x", 10, {})
    assert not (tmp_path / "x").exists()


def test_pickle_with_code_is_refused(tmp_path):
    import io
    import pickle
    import tarfile

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        data = pickle.dumps({b"data": Evil()})
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    p = make_params({"dataset": "cifar10", "data": {"source": str(tmp_path / "evil.tar.gz")}})
    refused = r"evil.tar.gz: cifar-10-batches-py/data_batch_1: refusing to load builtins.print"
    with pytest.raises(ValueError, match=refused):
        next(sources.iter_split(p, "train"))


def test_lean_shard_reader_matches_webdataset_and_names_truncated_shards(tmp_path):
    import tarfile

    import webdataset as wds

    from ddpm.config import ShardCheck
    from ddpm.data.loader import shard_samples
    from ddpm.data.shards import ShardFile

    write(digits_params(), tmp_path / "d")
    files = shards.shard_files(tmp_path / "d", "train")
    urls = [str(f.path) for f in files]
    for check in ShardCheck:
        ours = [sample for f in files for sample in shard_samples(f, check)]
        theirs = list(wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()))
        assert len(ours) == len(theirs) == 1497
        for a, b in zip(ours, theirs, strict=True):
            assert (a["__key__"], a["png"], a["cls"]) == (b["__key__"], b["png"], b["cls"])

    with tarfile.open(urls[0]) as tar:
        members = tar.getmembers()[:5]
    assert [m.offset for m in members] == [0, 1024, 2048, 3072, 4096]  # no PAX headers: 512 B header + 1 block
    whole, cut = Path(urls[0]).read_bytes(), tmp_path / "cut.tar"

    def read_cut(length):
        """The reader on a shard cut at ``length``, its manifest entry agreeing (size and hash): the parser's own
        checks, as a streaming reader meets them before the shard's end."""
        cut.write_bytes(whole[:length])
        entry = ShardFile(cut, 5, length, hashlib.sha256(whole[:length]).hexdigest(), (8, 8, 1))
        list(shard_samples(entry, ShardCheck.STREAMING))

    with pytest.raises(ValueError, match=rf"shard .*cut.tar is corrupt: truncated after member '{members[3].name}'"):
        read_cut(members[4].offset)  # cut between samples
    with pytest.raises(ValueError, match=rf"shard .*cut.tar is corrupt: member '{members[3].name}' is truncated"):
        read_cut(members[3].offset_data + 10)  # cut inside a PNG
