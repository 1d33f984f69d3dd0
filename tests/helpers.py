"""Synthetic inputs the tests build: CIFAR-10 in its official pickle layout and as class folders."""

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def cifar_pickle_tarball(path: Path, per_batch: int = 4) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                     b"labels": [int(x) for x in rng.integers(0, 10, per_batch)], b"batch_label": name.encode()}
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
