"""LSUN lmdb, image folders and tars, archive safety, corrupt images, and the resumable MD5-checked download."""

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.datasets import cifar_pickle_tarball, encoded, image_folder, lsun_lmdb
from helpers.params import make_params

from ddpm.data import shards, sources
from ddpm.data.download import fetch


def prepare(params, out):
    skipped = {}
    return shards.write_dataset(
        {s: sources.iter_split(params, s, skipped) for s in sources.SPLITS}, out, params.data.shard_size, {}, skipped
    )


def test_lsun_lmdb_is_cropped_resized_and_split_in_key_order(tmp_path):
    db = lsun_lmdb(tmp_path / "church_lmdb")
    p = make_params(
        {
            "dataset": "lsun_church",
            "data": {"source": str(db), "resolution": 16, "test_size": 2, "shard_size": 4},
            "model": {"ch_mult": [1, 2]},
        }
    )
    m = prepare(p, tmp_path / "out")
    assert (m["splits"]["test"]["count"], m["splits"]["train"]["count"]) == (2, 10)
    assert m["splits"]["train"]["shape"] == [16, 16, 3]
    test_keys = [k for k, _, _ in sources.iter_split(p, "test")]
    assert test_keys == [f"{i:040x}" for i in range(2)]
    limited = make_params(p.model_dump(mode="json") | {"data": p.data.model_dump() | {"limit": 3}})
    assert len(list(sources.iter_split(limited, "train"))) == 3


def test_center_crop_then_antialiased_resize():
    img = np.zeros((30, 50, 3), dtype=np.uint8)
    img[:, 10:40] = 200  # the central 30×30 square is uniformly 200
    out = sources.center_crop_resize(img, 15)
    assert out.shape == (15, 15, 3) and (out == 200).all()


def test_corrupt_lmdb_value_names_the_key_or_is_skipped_and_counted(tmp_path):
    bad = f"{5:040x}".encode()
    db = lsun_lmdb(tmp_path / "db", corrupt_key=bad)
    raw = {
        "dataset": "lsun_cat",
        "data": {"source": str(db), "resolution": 8, "test_size": 2, "shard_size": 50},
        "model": {"ch_mult": [1, 2], "attn_resolutions": [4]},
    }
    with pytest.raises(sources.CorruptImage, match=f"db: {bad.decode()}: cannot decode image"):
        prepare(make_params(raw), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    raw["data"]["skip_corrupt"] = True
    m = prepare(make_params(raw), tmp_path / "out")
    assert m["splits"]["train"]["count"] == 9
    assert m["splits"]["train"]["skipped"] == {"count": 1, "keys": [bad.decode()]}


def test_folder_with_class_subfolders_mixed_sizes_and_a_corrupt_file(tmp_path):
    root = image_folder(tmp_path / "imgs", corrupt="3.png")
    raw = {
        "dataset": "folder",
        "data": {"source": str(root), "resolution": 8, "test_size": 2, "class_folders": True},
        "model": {"ch_mult": [1, 2], "attn_resolutions": [4]},
    }
    with pytest.raises(sources.CorruptImage, match=r"imgs: (cats|dogs)/3.png: cannot decode image"):
        prepare(make_params(raw), tmp_path / "a")
    raw["data"]["skip_corrupt"] = True
    p = make_params(raw)
    m = prepare(p, tmp_path / "a")
    assert m["splits"]["train"]["count"] + m["splits"]["test"]["count"] == 8  # 10 images, 2 corrupt, txt ignored
    labels = {k: label for s in sources.SPLITS for k, _, label in sources.iter_split(p, s)}
    assert {k.split("_")[0]: v for k, v in labels.items()} == {"cats": 0, "dogs": 1}
    # the same images from a tar give the same shards, byte for byte
    with tarfile.open(tmp_path / "imgs.tar", "w") as tar:
        tar.add(root, arcname=".")
    m2 = prepare(make_params(raw | {"data": raw["data"] | {"source": str(tmp_path / "imgs.tar")}}), tmp_path / "b")
    digests = [[s["sha256"] for s in x["splits"]["train"]["shards"]] for x in (m, m2)]
    assert digests[0] == digests[1]


@pytest.mark.parametrize("member", ["../evil.png", "/etc/evil.png", "link.png"])
def test_archive_members_escaping_or_linking_are_refused(tmp_path, member):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(member)
        if member == "link.png":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    p = make_params({"dataset": "celebahq", "data": {"source": str(path)}})
    with pytest.raises(ValueError, match="refusing"):
        sources.check_source(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.tar"]


@pytest.mark.parametrize("member", ["../evil.png", "/etc/evil.png", "link.png"])
def test_zip_members_escaping_or_linking_are_refused(tmp_path, member):
    import stat
    import zipfile

    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/a.png", encoded(np.zeros((8, 8, 3), np.uint8), "PNG"))
        info = zipfile.ZipInfo(member)
        if member == "link.png":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        else:
            zf.writestr(info, b"abc")
    p = make_params({"dataset": "celebahq", "data": {"source": str(path)}})
    with pytest.raises(ValueError, match="refusing"):
        sources.check_source(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.zip"]  # nothing was extracted anywhere


def test_zip_of_images_is_read_in_memory(tmp_path):
    import zipfile

    path = tmp_path / "faces.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(5):
            zf.writestr(f"imgs/{i}.png", encoded(np.full((12, 10, 3), 40 * i, np.uint8), "PNG"))
    p = make_params(
        {
            "dataset": "celebahq",
            "data": {"source": str(path), "resolution": 8, "test_size": 2},
            "model": {"ch_mult": [1, 2], "attn_resolutions": [4]},
        }
    )
    train = list(sources.iter_split(p, "train"))
    test = list(sources.iter_split(p, "test"))
    assert len(train) == 3 and len(test) == 2 and train[0][1].shape == (8, 8, 3)


def test_empty_source_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    p = make_params({"dataset": "folder", "data": {"source": str(tmp_path / "empty")}})
    with pytest.raises(ValueError, match="data.source: no images"):
        sources.check_source(p)


class _Server:
    """A loopback HTTP server with Range support that can cut the first response short."""

    def __init__(self, payload: bytes, cut_first_at: int | None = None):
        state = {"cut": cut_first_at, "ranges": []}

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                start = 0
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                state["ranges"].append(start)
                body = payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if state["cut"] is not None:
                    body, state["cut"] = body[: state["cut"]], None
                self.wfile.write(body)

        self.state = state
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/cifar-10-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_download_resumes_after_a_cut_and_checks_md5(tmp_path):
    payload = cifar_pickle_tarball(tmp_path / "src.tar.gz").read_bytes()
    md5 = hashlib.md5(payload).hexdigest()  # noqa: S324
    server = _Server(payload, cut_first_at=len(payload) // 3)
    dest = tmp_path / "dl" / "cifar-10-python.tar.gz"
    try:
        with pytest.raises(ValueError, match="data.md5: .* downloaded with MD5"):
            fetch(server.url, dest, md5, timeout=5)  # the cut transfer is incomplete: its MD5 cannot match
        part = dest.with_name(dest.name + ".part")
        assert not dest.exists() and 0 < part.stat().st_size < len(payload)
        assert fetch(server.url, dest, md5, timeout=5) == dest  # resumes from the .part with a Range request
        assert dest.read_bytes() == payload and not part.exists()
        assert server.state["ranges"] == [0, len(payload) // 3]
        # through the cifar10 source, with data.download and data.url/md5
        p = make_params({"dataset": "cifar10", "data": {"url": server.url, "md5": md5, "shard_size": 5}})
        assert sources.cifar10_path(p).read_bytes() == payload
    finally:
        server.close()


def test_wrong_md5_is_an_error_and_the_bytes_are_never_used(tmp_path):
    payload = b"x" * 1000
    server = _Server(payload)
    dest = tmp_path / "file.tar.gz"
    try:
        with pytest.raises(ValueError, match="expected 0+; the bytes stay in .*file.tar.gz.part"):
            fetch(server.url, dest, "0" * 32, timeout=5)
        assert not dest.exists() and (tmp_path / "file.tar.gz.part").read_bytes() == payload
    finally:
        server.close()


def test_unreachable_url_fails_fast_with_a_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.url: cannot fetch http://127.0.0.1:9/x .*set data.source"):
        fetch("http://127.0.0.1:9/x", tmp_path / "x", "0" * 32, timeout=5)


def test_offline_cifar10_names_where_to_put_the_archive_and_no_file_that_is_not_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = make_params({"dataset": "cifar10", "data": {"url": "http://127.0.0.1:9/cifar-10-python.tar.gz"}})
    with pytest.raises(FileNotFoundError) as err:
        sources.cifar10_path(p)
    message = str(err.value)
    assert "\n" not in message and "bytes so far" not in message
    assert f"put the archive at data/downloads/cifar-10-python.tar.gz (MD5 {p.data.md5})" in message
    assert "set data.source to a local copy" in message
    assert not (tmp_path / "data" / "downloads" / "cifar-10-python.tar.gz.part").exists()
    # a copy placed where the message says is used, without a network
    (tmp_path / "data" / "downloads").mkdir(parents=True, exist_ok=True)
    archive = cifar_pickle_tarball(tmp_path / "data" / "downloads" / "cifar-10-python.tar.gz")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()  # noqa: S324
    placed = make_params({"dataset": "cifar10", "data": {"url": p.data.url, "md5": md5}})
    assert sources.cifar10_path(placed) == Path("data/downloads/cifar-10-python.tar.gz")


def test_check_obtainable_refuses_before_reading_when_the_images_cannot_be_had(tmp_path, monkeypatch):
    """The check stage's test of a dataset whose preparation is pending: a HEAD request, no image read."""
    monkeypatch.chdir(tmp_path)
    sources.check_obtainable(make_params({"dataset": "digits"}))
    offline = make_params({"dataset": "cifar10", "data": {"url": "http://127.0.0.1:9/cifar-10-python.tar.gz"}})
    with pytest.raises(FileNotFoundError) as err:
        sources.check_obtainable(offline, timeout=5)
    message = str(err.value)
    assert message.startswith("data.url: cannot reach http://127.0.0.1:9/cifar-10-python.tar.gz (")
    assert "put the archive at data/downloads/cifar-10-python.tar.gz" in message and "\n" not in message
    no_download = make_params({"dataset": "cifar10", "data": {"download": False}})
    with pytest.raises(FileNotFoundError, match="data.source: not set for dataset cifar10 and data.download is"):
        sources.check_obtainable(no_download)
    with pytest.raises(FileNotFoundError, match="data.source: not set; dataset lsun_church reads its images"):
        sources.check_obtainable(make_params({"dataset": "lsun_church"}))
    (tmp_path / "data" / "downloads").mkdir(parents=True)
    (tmp_path / "data" / "downloads" / "cifar-10-python.tar.gz").write_bytes(b"its MD5 is checked when read")
    sources.check_obtainable(offline)  # the archive where the message says: no request
    served = _Server(b"the archive")  # it answers HEAD with 501: the server is there, the download will tell
    try:
        monkeypatch.chdir(tmp_path / "data")  # no archive here
        sources.check_obtainable(make_params({"dataset": "cifar10", "data": {"url": served.url}}))
    finally:
        served.close()
