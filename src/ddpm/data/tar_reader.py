"""Reading a shard's members, checked against the manifest: its size before anything, its sha256 before decoding
(``ShardCheck.BEFORE``) or as the bytes go by (``STREAMING``), and every tar header's checksum.

Each failure is one ValueError naming the shard (and the member) and how to repair it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

from ddpm.config import ShardCheck
from ddpm.storage.files import file_digest

from .remote import open_stream, remote_size
from .shards import REPAIR, ShardFile

BLOCK = 512


class _Hashing:
    """A file read through sha256: what streaming verification hashes is exactly what the parser reads."""

    def __init__(self, f):
        self.f, self.digest, self.size = f, hashlib.sha256(), 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


def check_size(shard: ShardFile, size: int | None = None) -> None:
    """``size``: the bytes read; None: the file's size on disk (or as its server reports it)."""
    if size is None and shard.url is not None:
        size = remote_size(shard.url)
        if size is None:  # the server does not say; the bytes read are checked
            return
    if size is None:
        try:
            size = shard.path.stat().st_size
        except FileNotFoundError:
            raise ValueError(f"shard {shard.where} is missing; {REPAIR}") from None
    if size != shard.size:
        raise ValueError(
            f"shard {shard.where} is corrupt: {size:,} bytes, the manifest says {shard.size:,} "
            f"(truncated or overwritten); {REPAIR}"
        )


def _check_digest(shard: ShardFile, actual: str) -> None:
    if actual != shard.sha256:
        raise ValueError(f"shard {shard.where} is corrupt: sha256 {actual}, the manifest says {shard.sha256}; {REPAIR}")


def _header_checksum_ok(header: bytes) -> bool:
    """The ustar checksum: the header's byte sum with its own 8-byte field counted as spaces."""
    try:
        stored = int(header[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(header) - sum(header[148:156]) + 8 * ord(" ")


def _parse(f, shard: ShardFile, hashed: bool) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular file in the tar stream ``f``, header by header (no tarfile overhead).

    Header checksums are checked unless the bytes were ``hashed`` against the manifest already. PAX extended
    headers are honoured for the member name (``path``); other records are ignored.
    """
    name, pax_path = None, None
    while True:
        header = f.read(BLOCK)
        if len(header) < BLOCK:  # a whole tar ends with zero blocks, never mid-way
            raise ValueError(f"shard {shard.where} is corrupt: truncated after member {name!r}; {REPAIR}")
        if header.count(0) == BLOCK:
            return
        if not hashed and not _header_checksum_ok(header):
            raise ValueError(
                f"shard {shard.where} is corrupt: the tar header after member {name!r} fails its checksum; {REPAIR}"
            )
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = f"{prefix.decode('utf-8', 'replace')}/{name}"
        try:
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            raise ValueError(f"shard {shard.where} is corrupt: bad tar header at member {name!r}; {REPAIR}") from None
        data = f.read(size)
        if len(data) < size:
            raise ValueError(f"shard {shard.where} is corrupt: member {name!r} is truncated; {REPAIR}")
        f.read((-size) % BLOCK)
        kind = header[156:157]
        if kind == b"x":
            records = dict(
                r.split(" ", 1)[1].split("=", 1)
                for r in data.decode("utf-8", "replace").splitlines()
                if " " in r and "=" in r
            )
            pax_path = records.get("path", pax_path)
        elif kind in (b"0", b"\0"):
            yield (pax_path or name), data
            pax_path = None


def _open(shard: ShardFile):
    if shard.url is None:
        return open(shard.path, "rb", buffering=1 << 20)
    return open_stream(shard.url, shard.size)


def _read_all(shard: ShardFile) -> bytes:
    if shard.url is None:
        return shard.path.read_bytes()
    with _open(shard) as f:
        return f.read()


def verify_shards(shards: list[ShardFile]) -> None:
    """Check each shard's size and sha256 (read in blocks, not held): a corrupt one fails before any work."""
    for shard in shards:
        check_size(shard)
        _check_digest(shard, file_digest(shard.path))


def read_members(shard: ShardFile, check: ShardCheck) -> Iterator[tuple[str, bytes]]:
    """The members of ``shard``, checked as ``check`` says; a defect raises ValueError naming the shard."""
    check_size(shard)
    if check is ShardCheck.BEFORE:
        data = _read_all(shard)
        check_size(shard, len(data))
        _check_digest(shard, hashlib.sha256(data).hexdigest())
        yield from _parse(io.BytesIO(data), shard, hashed=True)
        return
    with _open(shard) as f:
        hashing = _Hashing(f)
        yield from _parse(hashing, shard, hashed=False)
        while hashing.read(1 << 20):  # the end-of-archive padding counts too
            pass
    check_size(shard, hashing.size)
    _check_digest(shard, hashing.digest.hexdigest())
