"""Image sources, each yielding (key, uint8 H×W×C array, label) per split in a fixed order.

digits (scikit-learn), cifar10 (official pickle tarball, downloaded or local, or a tar of class folders), the LSUN
lmdb exports, celebahq (a folder of images) and folder (any folder or tar of images, optional class folders).
Images are center-cropped to square and resized with antialiasing to ``data.resolution``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle  # noqa: S403 - only for the official CIFAR-10 batches, read with a restricted unpickler
import re
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from ddpm.config import Dataset, Params
from ddpm.storage.files import file_digest

from .download import fetch

SPLITS = ("train", "test")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
LSUN = {Dataset.LSUN_CHURCH, Dataset.LSUN_BEDROOM, Dataset.LSUN_CAT}

Sample = tuple[str, np.ndarray, int]  # (key, uint8 H×W×C image, label): what a split yields
# What a source yields before decoding: (key, encoded bytes or a decoded array, label, where it came from)
RawSample = tuple[str, np.ndarray | bytes, int, str]


class CorruptImage(ValueError):
    """An image that cannot be decoded; the message names the file or key."""


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded bytes → H×W×3 uint8, or CorruptImage naming ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except Exception as err:  # noqa: BLE001 - any decoder failure means a corrupt or truncated image
        raise CorruptImage(f"{where}: cannot decode image ({err})") from None


def center_crop_resize(img: np.ndarray, resolution: int) -> np.ndarray:
    """Center-crop to square, then resize with antialiasing (PIL bicubic) when the size differs."""
    h, w = img.shape[:2]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[top : top + s, left : left + s]
    if img.shape[0] == resolution:
        return img
    gray = img.shape[2] == 1
    pil = Image.fromarray(img[..., 0] if gray else img, "L" if gray else "RGB")
    out = np.asarray(pil.resize((resolution, resolution), Image.Resampling.BICUBIC))
    return out[..., None] if out.ndim == 2 else out


def _holdout(n: int, test_size: int, split: str) -> np.ndarray:
    """A fixed seeded split of n items: ``test_size`` for test, the rest for train, each in ascending order."""
    if not 0 < test_size < n:
        raise ValueError(f"data.test_size: must be in 1..{n - 1} for a source of {n} images, got {test_size}")
    order = np.random.default_rng(0).permutation(n)
    return np.sort(order[:test_size] if split == "test" else order[test_size:])


def _safe_key(name: str) -> str:
    """A WebDataset key: no dots (they separate the extension) or slashes."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def digits(split: str, test_size: int) -> Iterator[RawSample]:
    """scikit-learn's 1,797 8×8 digits (16 grey levels scaled to 0..255)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for i in _holdout(len(images), test_size, split):
        yield f"{i:06d}", images[i], int(bunch.target[i]), f"digits[{i}]"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are dicts of bytes, lists and numpy arrays; refuse any other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _name(tar: tarfile.TarFile) -> str:
    """The archive's file name, for messages."""
    return os.fsdecode(tar.name or "<archive>")


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Regular files of an archive, refusing links and names that would escape it (absolute or with ..)."""
    members = []
    for m in tar.getmembers():
        if m.issym() or m.islnk():
            raise ValueError(f"data.source: {_name(tar)}: member {m.name!r} is a link; refusing the archive")
        if m.name.startswith("/") or ".." in Path(m.name).parts:
            raise ValueError(f"data.source: {_name(tar)}: member {m.name!r} escapes the archive; refusing it")
        if m.isfile():
            members.append(m)
    return sorted(members, key=lambda m: m.name)


def _safe_zip_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The zip counterpart of ``_safe_members``: links (Unix mode in the external attributes) and escaping names
    refuse the archive."""
    members = []
    for m in zf.infolist():
        name = m.filename
        if stat.S_ISLNK(m.external_attr >> 16):
            raise ValueError(f"data.source: {zf.filename}: member {name!r} is a link; refusing the archive")
        if name.startswith("/") or "\\" in name or ".." in Path(name).parts or Path(name).drive:
            raise ValueError(f"data.source: {zf.filename}: member {name!r} escapes the archive; refusing it")
        if not m.is_dir():
            members.append(m)
    return sorted(members, key=lambda m: m.filename)


def _cifar_pickle(tar: tarfile.TarFile, members: list[tarfile.TarInfo], split: str) -> Iterator[RawSample]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    by_name = {Path(m.name).name: m for m in members}
    for name in names:
        if name not in by_name:
            raise ValueError(f"data.source: {_name(tar)} lacks cifar-10-batches-py/{name}")
        try:
            batch = _NumpyOnlyUnpickler(_open_member(tar, by_name[name]), encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            labels = batch[b"labels"]
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, tarfile.TarError) as err:
            raise ValueError(f"data.source: {_name(tar)}: {by_name[name].name}: {err}") from None
        for j, (img, label) in enumerate(zip(data, labels, strict=True)):
            yield f"{name}_{j:05d}", img, int(label), f"{name}[{j}]"


def _cifar_folders(tar: tarfile.TarFile, members: list[tarfile.TarInfo], split: str) -> Iterator[RawSample]:
    chosen = [m for m in members if Path(m.name).parts[-3:-2] == (split,)]
    if not chosen:
        raise ValueError(f"data.source: {_name(tar)} has no {split}/<class>/ images")
    for m in chosen:
        cls = Path(m.name).parent.name
        if cls not in CIFAR10_CLASSES:
            raise ValueError(f"data.source: {m.name} in {_name(tar)} is in unknown class folder {cls!r}")
        yield f"{cls}_{_safe_key(Path(m.name).stem)}", _read_member(tar, m), CIFAR10_CLASSES.index(cls), m.name


def _open_member(tar: tarfile.TarFile, m: tarfile.TarInfo) -> IO[bytes]:
    f = tar.extractfile(m)
    if f is None:  # not a regular file: _safe_members keeps only those
        raise ValueError(f"data.source: {_name(tar)}: {m.name} is not a file")
    return f


def _read_member(tar: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    try:
        return _open_member(tar, m).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(
            f"data.source: {_name(tar)}: cannot read {m.name} ({err}); the archive is truncated?"
        ) from None


def _cifar10_download(params: Params) -> tuple[Path, str]:
    """Where the official CIFAR-10 archive is kept once fetched, and what to do without a network."""
    d = params.data
    dest = Path("data") / "downloads" / Path(d.url).name
    hint = (
        f"without a network, put the archive at {dest} (MD5 {d.md5}) or set data.source to a local copy "
        "(that archive, or a tar.gz of train/<class>/*.jpg and test/<class>/*.jpg)"
    )
    return dest, hint


def _no_cifar10_download(params: Params) -> FileNotFoundError:
    return FileNotFoundError(
        "data.source: not set for dataset cifar10 and data.download is false; set data.source to a local "
        f"cifar-10-python.tar.gz (or a tar.gz of class folders), or data.download: true to fetch {params.data.url}"
    )


def cifar10_path(params: Params) -> Path:
    """The local CIFAR-10 archive: ``data.source``, or the official tarball fetched (MD5-checked) when allowed."""
    d = params.data
    if d.source:
        path = Path(d.source)
        if not path.is_file():
            raise FileNotFoundError(
                f"data.source: {path} not found; point it at cifar-10-python.tar.gz or a tar.gz of "
                "train/<class>/*.jpg and test/<class>/*.jpg"
            )
        return path
    if not d.download:
        raise _no_cifar10_download(params)
    dest, hint = _cifar10_download(params)
    return fetch(d.url, dest, d.md5, hint=hint)


def check_obtainable(params: Params, timeout: float = 10.0) -> None:
    """Fail in one line, without reading any image, when preparing the dataset could not get its images: no
    ``data.source`` for a dataset that needs one, or CIFAR-10 with neither its archive in ``data/downloads`` nor
    its URL answering (one HEAD request). A named ``data.source`` is ``check_named_files``' to check."""
    d = params.data
    if params.dataset is Dataset.DIGITS or d.source:
        return
    if params.dataset is not Dataset.CIFAR10:
        raise FileNotFoundError(
            f"data.source: not set; dataset {params.dataset.value} reads its images from data.source (an lmdb "
            "export for LSUN, a folder, tar or zip of images otherwise)"
        )
    if not d.download:
        raise _no_cifar10_download(params)
    dest, hint = _cifar10_download(params)
    if dest.is_file():
        return  # its MD5 is checked when it is read
    try:
        urllib.request.urlopen(urllib.request.Request(d.url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise FileNotFoundError(f"data.url: {d.url}: HTTP {err.code} {err.reason}; {hint}") from None
        # any other answer: the server is there, and the download says what it refuses
    except (urllib.error.URLError, OSError) as err:
        raise FileNotFoundError(f"data.url: cannot reach {d.url} ({getattr(err, 'reason', err)}); {hint}") from None


def cifar10(split: str, params: Params) -> Iterator[RawSample]:
    path = cifar10_path(params)
    try:
        tar = tarfile.open(path)
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"data.source: {path} is not a readable tar archive ({err})") from None
    with tar:
        members = _safe_members(tar)
        is_pickle = any(Path(m.name).name == "data_batch_1" for m in members)
        yield from (_cifar_pickle if is_pickle else _cifar_folders)(tar, members, split)


def lsun(split: str, params: Params) -> Iterator[RawSample]:
    """An LSUN lmdb export (values are encoded images), in key order: the first ``data.test_size`` are the test
    split, the rest train. Streams: memory does not grow with the number of images."""
    import lmdb

    path = Path(params.data.source or "")
    if not params.data.source or not path.exists():
        raise FileNotFoundError(
            f"data.source: LSUN lmdb folder {path} not found; point it at e.g. church_outdoor_train_lmdb"
        )
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, subdir=path.is_dir())
    except lmdb.Error as err:
        raise ValueError(f"data.source: {path} is not a readable lmdb ({err})") from None
    test_size = params.data.test_size
    with env, env.begin(write=False) as txn:
        for i, (key, value) in enumerate(txn.cursor()):
            if (split == "test") != (i < test_size):
                if split == "test":
                    return
                continue
            name = key.decode(errors="replace")
            yield _safe_key(name), bytes(value), 0, name


def image_tree(split: str, params: Params, class_folders: bool) -> Iterator[RawSample]:
    """Every image under a folder or inside a tar or zip, recursively, in name order; a fixed seeded test hold-out.

    Archive members are read in memory, never extracted; links and names escaping the archive refuse it.

    With ``class_folders`` the first path component is the class (labels index the sorted class names).
    """
    path = Path(params.data.source or "")
    if not params.data.source or not path.exists():
        raise FileNotFoundError(f"data.source: image folder or tar {path} not found")
    archive: tarfile.TarFile | zipfile.ZipFile | None = None
    entries: list[tuple[str, Callable[[], bytes]]]  # (name, how to read its bytes)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        entries = [(p.relative_to(path).as_posix(), p.read_bytes) for p in files]
    elif zipfile.is_zipfile(path):
        archive = zf = zipfile.ZipFile(path)
        entries = [
            (m.filename, partial(zf.read, m))
            for m in _safe_zip_members(zf)
            if Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
        ]
    else:
        try:
            archive = tar = tarfile.open(path)
        except (tarfile.TarError, OSError) as err:
            raise ValueError(f"data.source: {path} is neither a folder nor a readable tar ({err})") from None
        entries = [
            (m.name, partial(_read_member, tar, m))
            for m in _safe_members(tar)
            if Path(m.name).suffix.lower() in IMAGE_SUFFIXES
        ]
    if not entries:
        raise ValueError(f"data.source: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path}")
    classes = sorted({Path(name).parts[0] for name, _ in entries if len(Path(name).parts) > 1})
    try:
        for i in _holdout(len(entries), params.data.test_size, split):
            name, read = entries[i]
            label = classes.index(Path(name).parts[0]) if class_folders and len(Path(name).parts) > 1 else 0
            yield _safe_key(str(Path(name).with_suffix(""))), read(), label, name
    finally:
        if archive is not None:
            archive.close()


def _raw(params: Params, split: str) -> Iterator[RawSample]:
    ds = params.dataset
    if ds is Dataset.DIGITS:
        return digits(split, params.data.test_size)
    if ds is Dataset.CIFAR10:
        return cifar10(split, params)
    if ds in LSUN:
        return lsun(split, params)
    return image_tree(split, params, class_folders=ds is Dataset.FOLDER and params.data.class_folders)


def check_source(params: Params) -> None:
    """Fail fast, before any work, when the configured source cannot be read (downloading it if allowed)."""
    next(iter(_raw(params, "test")), None)


def iter_split(params: Params, split: str, skipped: dict[str, list[str]] | None = None) -> Iterator[Sample]:
    """Images of ``split`` at ``data.resolution`` in a fixed order, at most ``data.limit`` of them.

    A corrupt image stops with an error naming it, or, with ``data.skip_corrupt``, is left out and its key
    appended to ``skipped[split]``.
    """
    if split not in SPLITS:
        raise ValueError(f"split: unknown value {split!r}; allowed: {', '.join(SPLITS)}")
    count, limit = 0, params.data.limit
    source = Path(params.data.source).name if params.data.source else params.dataset.value
    for key, payload, label, where in _raw(params, split):
        if limit is not None and count >= limit:
            return
        try:
            img = payload if isinstance(payload, np.ndarray) else decode_image(payload, f"{source}: {where}")
        except CorruptImage:
            if not params.data.skip_corrupt:
                raise
            if skipped is not None:
                skipped.setdefault(split, []).append(key)
            continue
        count += 1
        yield key, center_crop_resize(img, params.data.resolution), label


def source_fingerprint(params: Params) -> str:
    """What identifies the source: the bundled dataset's version, a file's sha256, or a folder's file list."""
    if params.dataset is Dataset.DIGITS:
        import sklearn

        return f"sklearn-digits:{sklearn.__version__}"
    path = cifar10_path(params) if params.dataset is Dataset.CIFAR10 else Path(params.data.source or "")
    if path.is_dir():
        digest = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file():
                digest.update(f"{p.relative_to(path).as_posix()}\0{p.stat().st_size}\n".encode())
        return f"{path.name}/:files:sha256:{digest.hexdigest()}"
    return f"{path.name}:{path.stat().st_size}:sha256:{file_digest(path)}"
