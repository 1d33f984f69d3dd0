"""Image sources, each yielding (key, uint8 H×W×C array, label) per split in a fixed order."""

from __future__ import annotations

import hashlib
import io
import pickle  # noqa: S403 - only for the official CIFAR-10 batches, read with a restricted unpickler
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .config import Dataset, Params

SPLITS = ("train", "test")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_HINT = (
    "get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html (or a tar.gz of "
    "train/<class>/*.jpg and test/<class>/*.jpg) and set data.source to its path"
)

Sample = tuple[str, np.ndarray, int]


def _resize(img: np.ndarray, resolution: int) -> np.ndarray:
    """Center-crop to square, then resize with antialiasing (PIL bicubic) when the size differs."""
    h, w = img.shape[:2]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[top : top + s, left : left + s]
    if img.shape[0] == resolution:
        return img
    mode = "L" if img.shape[2] == 1 else "RGB"
    pil = Image.fromarray(img[..., 0] if mode == "L" else img, mode).resize((resolution, resolution), Image.BICUBIC)
    out = np.asarray(pil)
    return out[..., None] if out.ndim == 2 else out


def digits(split: str, test_size: int) -> Iterator[Sample]:
    """scikit-learn's 1,797 8×8 digits (16 grey levels scaled to 0..255); a fixed seeded split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    if not 0 < test_size < len(images):
        raise ValueError(f"data.test_size: must be in 1..{len(images) - 1} for digits, got {test_size}")
    order = np.random.default_rng(0).permutation(len(images))
    chosen = np.sort(order[:test_size] if split == "test" else order[test_size:])
    for i in chosen:
        yield f"{i:06d}", images[i], int(bunch.target[i])


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are dicts of bytes, lists and numpy arrays; refuse any other global."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar_pickle(tar: tarfile.TarFile, split: str) -> Iterator[Sample]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
    for name in names:
        if name not in members:
            raise ValueError(f"data.source: {tar.name} lacks cifar-10-batches-py/{name}")
        try:
            batch = _NumpyOnlyUnpickler(tar.extractfile(members[name]), encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            raise ValueError(f"data.source: {tar.name}: {members[name].name}: {err}") from None
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        for j, (img, label) in enumerate(zip(data, batch[b"labels"], strict=True)):
            yield f"{name}_{j:05d}", img, int(label)


def _cifar_folders(tar: tarfile.TarFile, split: str) -> Iterator[Sample]:
    members = sorted(
        (m for m in tar.getmembers() if m.isfile() and Path(m.name).parts[-3:-2] == (split,)),
        key=lambda m: m.name,
    )
    if not members:
        raise ValueError(f"data.source: {tar.name} has no {split}/<class>/ images")
    for m in members:
        cls = Path(m.name).parent.name
        if cls not in CIFAR10_CLASSES:
            raise ValueError(f"data.source: {m.name} is in unknown class folder {cls!r}")
        try:
            img = np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB"))
        except Exception as err:  # noqa: BLE001 - any decoder failure is a corrupt file
            raise ValueError(f"data.source: cannot decode {m.name} in {tar.name}: {err}") from None
        yield f"{cls}_{Path(m.name).stem}", img, CIFAR10_CLASSES.index(cls)


def cifar10(split: str, source: str | None) -> Iterator[Sample]:
    """CIFAR-10 from a local official pickle tarball or a tar.gz of class folders."""
    if not source:
        raise FileNotFoundError(f"data.source: not set for dataset cifar10; {CIFAR10_HINT}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"data.source: {path} not found; {CIFAR10_HINT}")
    with tarfile.open(path) as tar:
        is_pickle = any(Path(m.name).name == "data_batch_1" for m in tar.getmembers())
        yield from (_cifar_pickle if is_pickle else _cifar_folders)(tar, split)


def check_source(params: Params) -> None:
    """Fail fast, before any work, when the configured source cannot be read."""
    if params.dataset is Dataset.CIFAR10:
        next(iter(cifar10("test", params.data.source)), None)


def iter_split(params: Params, split: str) -> Iterator[Sample]:
    """Images of ``split`` at ``data.resolution``, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"split: unknown value {split!r}; allowed: {', '.join(SPLITS)}")
    if params.dataset is Dataset.DIGITS:
        source = digits(split, params.data.test_size)
    else:
        source = cifar10(split, params.data.source)
    for key, img, label in source:
        yield key, _resize(img, params.data.resolution), label


def source_fingerprint(params: Params) -> str:
    """What identifies the source: a file's size and sha256, or the bundled dataset's name and version."""
    if params.dataset is Dataset.DIGITS:
        import sklearn

        return f"sklearn-digits:{sklearn.__version__}"
    path = Path(params.data.source)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{path.name}:{path.stat().st_size}:sha256:{digest.hexdigest()}"
