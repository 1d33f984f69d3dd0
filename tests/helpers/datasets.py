"""Synthetic dataset sources (CIFAR-10 pickles and class folders, LSUN-style lmdb, image folders) and shards."""

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from ddpm.config import Params


def write_shards(params: Params, out: Path) -> Path:
    """The params' dataset as shards in ``out``, as the prepare stage writes them."""
    from ddpm.data.ingest import write_shards as prepare

    prepare(params, out)
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def cifar_pickle_tarball(path: Path, per_batch: int = 4) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {
                b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                b"labels": [int(x) for x in rng.integers(0, 10, per_batch)],
                b"batch_label": name.encode(),
            }
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(batch, protocol=2))
    return path


def cifar_folder_tarball(path: Path, per_class: int = 2, corrupt: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for cls in ("airplane", "cat"):
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
                    name = f"{split}/{cls}/{i:04d}.jpg"
                    _add(tar, name, b"not a jpeg" if name == corrupt else buf.getvalue())
    return path


def encoded(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def lsun_lmdb(path: Path, n: int = 12, corrupt_key: bytes | None = None) -> Path:
    """An lmdb like LSUN's exports: keys are hex ids, values encoded JPEG/WebP images of mixed, non-square sizes."""
    import lmdb

    rng = np.random.default_rng(0)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i in range(n):
            key = f"{i:040x}".encode()
            img = rng.integers(0, 256, (24 + i, 40 - i, 3), dtype=np.uint8)
            value = b"\xff\xd8 truncated" if key == corrupt_key else encoded(img, "WEBP" if i % 2 else "JPEG")
            txn.put(key, value)
    env.close()
    return path


def image_folder(root: Path, corrupt: str | None = None) -> Path:
    """cats/ and dogs/ with PNG and JPEG images of mixed sizes (some non-square)."""
    rng = np.random.default_rng(1)
    for cls in ("cats", "dogs"):
        (root / cls / "sub").mkdir(parents=True)
        for i in range(5):
            img = rng.integers(0, 256, (20 + 3 * i, 20, 3), dtype=np.uint8)
            name = root / cls / ("sub" if i == 4 else ".") / f"{i}.{'png' if i % 2 else 'jpg'}"
            name.write_bytes(b"garbage" if name.name == corrupt else encoded(img, "PNG" if i % 2 else "JPEG"))
    (root / "notes.txt").write_text("not an image")
    return root
