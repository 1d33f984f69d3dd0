"""File helpers shared by the stages: checksums and atomic text and image writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (md5/sha1 only to match published checksums)."""
    digest = hashlib.new(algorithm, usedforsecurity=algorithm not in ("md5", "sha1"))
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_png(path: Path, image) -> None:
    """Write a uint8 H×W×C array (C = 1 or 3) as PNG to a temporary file beside ``path``, then rename it."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp)
    os.replace(tmp, path)
