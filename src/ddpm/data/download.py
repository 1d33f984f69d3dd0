"""Resumable, MD5-checked downloads: bytes go to ``<dest>.part`` and become ``dest`` only when the MD5 matches."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from ddpm.storage.files import file_digest


def fetch(url: str, dest: Path, md5: str, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (resuming a previous ``.part``) and verify its MD5.

    A complete file with the wrong MD5 is an error; its bytes stay in ``.part`` (never used) so that a
    truncated transfer can resume; delete that file to start over.
    """
    dest = Path(dest)
    if dest.is_file() and file_digest(dest, "md5") == md5:
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
            raise FileNotFoundError(f"data.url: cannot fetch {url} (HTTP {err.code}); {_offline_hint()}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise FileNotFoundError(
            f"data.url: cannot fetch {url} ({getattr(err, 'reason', err)}); bytes so far kept in {part}; "
            f"{_offline_hint()}"
        ) from None
    got = file_digest(part, "md5")
    if got != md5:
        raise ValueError(
            f"data.md5: {url} downloaded with MD5 {got}, expected {md5}; the bytes stay in {part} for resuming "
            "and are not used (delete it to start over)"
        )
    os.replace(part, dest)
    return dest


def _offline_hint() -> str:
    return "without internet, set data.source to a local copy of the file"
