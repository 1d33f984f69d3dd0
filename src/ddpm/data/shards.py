"""Deterministic WebDataset shards (``__key__``, ``png``, ``cls``) and their manifest (count, size, sha256)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from PIL import Image

from ddpm.storage.files import atomic_folder, file_digest

from .remote import join, read_url

MANIFEST = "manifest.json"
REPAIR = "rerun `dvc repro prepare` (or `dvc pull` if the shards came from a DVC remote)"


@dataclass(frozen=True)
class ShardFile:
    """One shard as the manifest describes it: what a reader checks the file against."""

    path: Path
    count: int  # images
    size: int  # bytes
    sha256: str
    shape: tuple[int, int, int]  # every image's H, W, C
    url: str | None = None  # read from here instead of ``path`` (``data.shards_url``)

    @property
    def where(self) -> str:
        """Where the reader gets the bytes, as messages name it."""
        return self.url or str(self.path)


def encode_png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _write_split(samples: Iterable, out_dir: Path, split: str, shard_size: int) -> dict:
    """Write one split as ``{split}-%06d.tar`` shards with fixed member order, mtimes and owners."""
    shards: list[dict[str, Any]] = []
    writer, count, in_shard, shape = None, 0, 0, None
    try:
        for key, img, label in samples:
            if shape is None:
                shape = list(img.shape)
            elif list(img.shape) != shape:
                raise ValueError(f"{split}/{key}: image shape {list(img.shape)} differs from {shape}")
            if writer is None or in_shard == shard_size:
                if writer is not None:
                    writer.close()
                name = f"{split}-{len(shards):06d}.tar"
                shards.append({"name": name, "count": 0})
                # An integer mtime: a float one makes tarfile add a PAX header to every member.
                writer = wds.TarWriter(str(out_dir / name), mtime=0, user="ddpm", group="ddpm", mode=0o444)
                in_shard = 0
            writer.write({"__key__": key, "png": encode_png(img), "cls": str(label).encode("ascii")})
            in_shard += 1
            shards[-1]["count"] += 1
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ValueError(f"data source: split {split!r} is empty")
    for shard in shards:
        shard["bytes"] = (out_dir / shard["name"]).stat().st_size
        shard["sha256"] = file_digest(out_dir / shard["name"])
    return {"count": count, "shape": shape, "shards": shards}


def write_dataset(
    splits: dict[str, Iterable], out_dir: Path, shard_size: int, meta: dict, skipped: dict[str, list[str]] | None = None
) -> dict:
    """Write every split and the manifest into a temp folder beside ``out_dir``, then swap it in.

    ``skipped`` (filled by the sources while the splits are consumed) goes into the manifest as counts and keys.
    A failure leaves the previous ``out_dir`` (if any) untouched and no partial folder behind.
    """
    manifest = dict(meta, shard_size=shard_size, splits={})
    with atomic_folder(out_dir) as tmp:
        for split, samples in splits.items():
            manifest["splits"][split] = _write_split(samples, tmp, split, shard_size)
            keys = (skipped or {}).get(split, [])
            manifest["splits"][split]["skipped"] = {"count": len(keys), "keys": keys}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(shard_dir: Path, url: str | None = None) -> dict:
    """The manifest in ``shard_dir``; with ``url`` (``data.shards_url``), the one served there, which must equal
    the local one where there is one (a node without the shards reads only the served one)."""
    path = Path(shard_dir) / MANIFEST
    if url is not None:
        served = _parse_manifest(read_url(join(url, MANIFEST)), join(url, MANIFEST))
        if path.is_file() and _parse_manifest(path.read_bytes(), str(path)) != served:
            raise ValueError(
                f"data.shards_url: {join(url, MANIFEST)} differs from {path}; serve the shards that prepare wrote "
                "(copy the whole folder) or unset data.shards_url"
            )
        return served
    if not path.is_file():
        raise FileNotFoundError(f"shards: {path} not found; run the prepare stage")
    return _parse_manifest(path.read_bytes(), str(path))


def _parse_manifest(data: bytes, where: str) -> dict:
    try:
        return json.loads(data)
    except ValueError as err:  # malformed JSON or text
        raise ValueError(f"shards: {where} is not a readable manifest ({err}); {REPAIR}") from None


def shard_files(shard_dir: Path, split: str, url: str | None = None) -> list[ShardFile]:
    """The shards of ``split`` in order, with the size, sha256 and image shape the manifest records; with ``url``,
    read from there (``read_manifest``)."""
    manifest = read_manifest(shard_dir, url)
    if split not in manifest["splits"]:
        raise ValueError(f"shards: split {split!r} not in {url or shard_dir}; have {sorted(manifest['splits'])}")
    entry = manifest["splits"][split]
    files = []
    for shard in entry["shards"]:
        if not {"bytes", "sha256"} <= shard.keys():
            raise ValueError(
                f"shards: {join(url, MANIFEST) if url else Path(shard_dir) / MANIFEST} records no size and sha256 "
                f"for {shard['name']} (an older prepare); {REPAIR}"
            )
        files.append(
            ShardFile(
                Path(shard_dir) / shard["name"],
                shard["count"],
                shard["bytes"],
                shard["sha256"],
                tuple(entry["shape"]),
                join(url, shard["name"]) if url else None,
            )
        )
    return files


def manifest_counts(manifest: dict) -> dict[str, int]:
    """Images, shards and skipped images per split, as flat metrics."""
    splits = manifest["splits"]
    counts = {f"{s}_images": splits[s]["count"] for s in splits}
    counts |= {f"{s}_shards": len(splits[s]["shards"]) for s in splits}
    return counts | {f"{s}_skipped": splits[s]["skipped"]["count"] for s in splits}


def split_identity(shard_dir: Path, split: str, url: str | None = None) -> dict:
    """What identifies the data a run read: a name (dataset, resolution, split), a digest of the split's shard
    hashes (equal shards, equal digest) and where it came from."""
    manifest = read_manifest(shard_dir, url)
    entry = manifest["splits"][split]
    digest = hashlib.sha256("".join(s["sha256"] for s in entry["shards"]).encode()).hexdigest()[:16]
    return {
        "name": f"{manifest.get('dataset', 'data')}-{entry['shape'][0]}px-{split}",
        "digest": digest,
        "images": str(entry["count"]),
        "source": str(manifest.get("source_fingerprint", "")),
    }
