"""Shards from a URL (``data.shards_url``) kept on the node's own disk: the first reader of a shard on a node (any
rank, any DataLoader worker) fetches it once, checks its size and sha256 against the manifest, and renames it
into the cache; the node's other readers wait on its lock and then read the file, in this epoch and every later
one. Files are named by their sha256, so a shard served under another URL or dataset is fetched once too.

Where: ``DDPM_SHARD_CACHE`` (a folder on a local disk, e.g. a job's scratch space), else the system's temporary
folder; ``DDPM_SHARD_CACHE=off`` streams every read from the URL instead.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from ddpm.storage.files import exclusive_lock

from .remote import open_stream
from .shards import REPAIR, ShardFile

BLOCK = 1 << 20


def node_cache() -> Path | None:
    """The node's shard cache folder (None: ``DDPM_SHARD_CACHE=off``)."""
    where = os.environ.get("DDPM_SHARD_CACHE", "").strip()
    if where.lower() == "off":
        return None
    return Path(where) if where else Path(tempfile.gettempdir()) / "ddpm-shard-cache"


def cached(shard: ShardFile, cache: Path) -> ShardFile:
    """``shard`` as a file in ``cache``, fetched from its URL unless this node has it already (a local shard is
    returned as it is)."""
    if shard.url is None:
        return shard
    path = Path(cache) / f"{shard.sha256}.tar"
    if not _present(path, shard):
        with exclusive_lock(Path(cache) / f"{shard.sha256}.lock"):
            if not _present(path, shard):  # another reader of this node may have fetched it meanwhile
                _fetch(shard, path)
    return replace(shard, path=path, url=None)


def cached_already(shard: ShardFile, cache: Path) -> bool:
    """Whether this node holds ``shard`` (a served one) in ``cache``."""
    return shard.url is not None and _present(Path(cache) / f"{shard.sha256}.tar", shard)


def _present(path: Path, shard: ShardFile) -> bool:
    try:
        return path.stat().st_size == shard.size  # written only after its sha256 was checked
    except FileNotFoundError:
        return False


def _fetch(shard: ShardFile, path: Path) -> None:
    assert shard.url is not None
    tmp = path.with_suffix(".part")  # one writer at a time (the lock); a killed one's part is overwritten
    digest, size = hashlib.sha256(), 0
    try:
        with open_stream(shard.url, shard.size) as source, open(tmp, "wb") as out:
            while block := source.read(BLOCK):
                digest.update(block)
                size += len(block)
                out.write(block)
        if size != shard.size:
            raise ValueError(
                f"shard {shard.url} is corrupt: {size:,} bytes, the manifest says {shard.size:,} "
                f"(truncated or overwritten); {REPAIR}"
            )
        if digest.hexdigest() != shard.sha256:
            raise ValueError(
                f"shard {shard.url} is corrupt: sha256 {digest.hexdigest()}, the manifest says {shard.sha256}; {REPAIR}"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
