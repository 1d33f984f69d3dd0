"""Resumable, checksum-checked downloads: bytes go to ``<dest>.part`` and become ``dest`` only when the checksum
matches."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from ddpm.storage.files import file_digest

OFFLINE_HINT = (
    "offline, set data.source to a local copy of the file, or use the built-in tiny profile (-S profile=tiny)"
)


def fetch(
    url: str,
    dest: Path,
    checksum: str,
    timeout: float = 30.0,
    *,
    algorithm: str = "md5",
    key: str = "data.url",
    hint: str = OFFLINE_HINT,
) -> Path:
    """Download ``url`` to ``dest`` (resuming a previous ``.part``) and verify its ``algorithm`` digest.

    A complete file with the wrong digest is an error naming ``key``'s checksum; its bytes stay in ``.part`` (never
    used) so that a truncated transfer can resume; delete that file to start over. A transfer that fails is a
    FileNotFoundError naming ``key``, the URL and ``hint``.
    """
    dest = Path(dest)
    if dest.is_file() and file_digest(dest, algorithm) == checksum:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            append = have and response.status == 206
            with open(part, "ab" if append else "wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
    except urllib.error.HTTPError as err:
        if err.code != 416:  # 416: nothing left to send, the .part is already whole
            raise FileNotFoundError(f"{key}: cannot fetch {url} (HTTP {err.code}); {hint}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        kept = f"bytes so far kept in {part}; " if part.is_file() and part.stat().st_size else ""
        raise FileNotFoundError(f"{key}: cannot fetch {url} ({getattr(err, 'reason', err)}); {kept}{hint}") from None
    got = file_digest(part, algorithm)
    if got != checksum:
        what = "data.md5" if key == "data.url" else key
        raise ValueError(
            f"{what}: {url} downloaded with {algorithm.upper()} {got}, expected {checksum}; the bytes stay in {part} "
            "for resuming and are not used (delete it to start over)"
        )
    os.replace(part, dest)
    return dest
