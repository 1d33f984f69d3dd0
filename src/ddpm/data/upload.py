"""Prepared shards copied to a folder URL that ``data.shards_url`` can name (an S3 bucket, or any store fsspec
writes): every shard is checked against the manifest before it leaves, the shards go first and ``manifest.json``
last, and each copy's size is read back, so a reader never finds a manifest whose shards are not all there."""

from __future__ import annotations

from pathlib import Path

from ddpm.data.remote import RemoteError, join, remote_size, scheme, write_file
from ddpm.data.shards import MANIFEST, ShardFile, read_manifest, shard_files
from ddpm.data.tar_reader import verify_shards


def upload_shards(folder: Path, url: str) -> list[ShardFile]:
    """Copy the shard folder ``folder`` (what prepare wrote: data/shards/<dataset>) to ``url``; the shards copied.
    A shard that does not match the manifest stops it before anything is written."""
    if "://" not in url or scheme(url) in ("", "file"):
        raise ValueError(f"{url!r} is not a folder URL (s3://bucket/folder, or another scheme fsspec writes)")
    manifest = read_manifest(folder)
    shards = [shard for split in sorted(manifest["splits"]) for shard in shard_files(folder, split)]
    verify_shards(shards)
    for shard in shards:
        _copy(shard.path, join(url, shard.path.name), shard.size)
    manifest_path = Path(folder) / MANIFEST
    _copy(manifest_path, join(url, MANIFEST), manifest_path.stat().st_size)
    return shards


def _copy(path: Path, url: str, size: int) -> None:
    write_file(path, url)
    stored = remote_size(url)
    if stored is not None and stored != size:
        raise RemoteError(f"{url}: {stored:,} bytes arrived of {size:,}; run the upload again")
