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


def test_too_little_shared_memory_for_the_workers_is_refused_in_one_line(monkeypatch):
    """Docker's default 64 MiB /dev/shm against 4 workers of batches of 64 images of 3×256×256: refused before
    training, naming the key, the numbers and the fixes; no workers, or small batches, pass."""
    import collections

    from ddpm.data import shared_memory

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shared_memory.shutil, "disk_usage", lambda path: usage(64 * 2**20, 0, 64 * 2**20))
    batch = 64 * 3 * 256 * 256
    with pytest.raises(OSError) as err:
        shared_memory.check_shared_memory(4, batch, processes=2)
    assert str(err.value) == (
        "train.loader_workers: 2 × 4 workers × 5 batches of 12.0 MiB need 480 MiB of shared memory (/dev/shm: 64 MiB "
        "free of 64 MiB; Docker gives 64 MiB unless run with --ipc=host or --shm-size); run the container with "
        "--ipc=host or a larger --shm-size, or set train.loader_workers=0"
    )
    shared_memory.check_shared_memory(0, batch, processes=2)
    shared_memory.check_shared_memory(4, 128 * 3 * 32 * 32)  # CIFAR-10's batches: 7.5 MiB in all


KILL_A_WORKER = """
import os, signal, sys, time, warnings
from pathlib import Path
from ddpm.data.loader import train_stream
from ddpm.data.shared_memory import worker_failure

warnings.simplefilter("ignore")
stream = train_stream(Path(sys.argv[1]), 32, seed=7, shuffle_buffer=300, workers=2)
next(stream)
me = os.getpid()
try:
    os.kill(int(Path(f"/proc/{me}/task/{me}/children").read_text().split()[0]), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        next(stream)
        time.sleep(0.05)
    line = "no error within 60 s"
except BaseException as err:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # PyTorch's handler raises again as the other workers end
    line = worker_failure(err) or f"not a worker failure: {err}"
os.write(1, line.encode())
os._exit(0)
"""


def test_a_killed_worker_stops_the_stream_with_one_line_not_a_hang(folder):
    """SIGKILL to a DataLoader worker (as SIGBUS kills one on a full /dev/shm): PyTorch's error reaches the
    training process (raised by its SIGCHLD handler wherever that process is: so in a process of its own here) and
    reads as one line naming the worker and the shared memory."""
    import subprocess
    import sys

    from ddpm.data.shared_memory import worker_failure

    res = subprocess.run(
        [sys.executable, "-c", KILL_A_WORKER, str(folder)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    line = res.stdout
    # PyTorch's own line ("DataLoader worker (pid …) is killed by signal"), or the reset of the dead worker's queue
    assert line.startswith(("DataLoader worker (pid", "DataLoader worker died: ")) and "\n" not in line, line
    assert "/dev/shm: " in line and "train.loader_workers=0" in line
    assert worker_failure(RuntimeError("CUDA out of memory")) is None
