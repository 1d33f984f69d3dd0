"""Checksums, and atomic writes: a file or folder is written under a temporary name beside its destination and
renamed over it only when complete, so a failure (a full disk, a kill) leaves the previous version intact and no
partial file behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (md5/sha1 only to match published checksums)."""
    digest = hashlib.new(algorithm, usedforsecurity=algorithm not in ("md5", "sha1"))
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same extension, so writers that go by it work) to write to; renamed over
    ``path`` when the block ends, removed if it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``path`` to fill; swapped in for ``path`` (replacing any previous one) when
    the block ends, removed if it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Rows with ``columns`` (default: the first row's keys) as columns; floats with 6 significant digits, None as
    empty."""
    cols = columns or list(rows[0])

    def cell(value) -> str:
        if value is None:
            return ""
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    lines = [",".join(cols)] + [",".join(cell(r.get(c)) for c in cols) for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def write_png(path: Path, image: np.ndarray) -> None:
    """A uint8 H×W×C array (C = 1 or 3) as PNG."""
    from PIL import Image

    with atomic_file(path) as tmp:
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_file(path) as tmp:
        np.savez(tmp, **arrays)
