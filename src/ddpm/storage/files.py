"""Checksums, and atomic writes: a file or folder is written under a temporary name beside its destination and
renamed over it only when complete, so a failure (a full disk, a kill) leaves the previous version intact and no
partial file behind."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
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


class WriteError(OSError):
    """A file or folder that could not be written, as one line: ``cannot write <path>: <reason>``."""

    def __str__(self) -> str:
        return str(self.strerror)


# What a failed write looks like: the disk or quota is full, the file system is read-only or refuses us.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}


def _write_failure(err: BaseException, tmp: Path) -> tuple[int, str] | None:
    """(errno, reason) when ``err`` is a failed write into ``tmp`` (the file or folder being written): an OSError
    about it or naming no file, or safetensors' error, which wraps the OS error in its message; else None (a read
    error of another file raised inside the block stays as it is)."""
    if isinstance(err, WriteError):  # already named by an inner atomic write
        return None
    if isinstance(err, OSError):
        named = err.filename is None or Path(err.filename) == tmp or tmp in Path(err.filename).parents
        if err.errno in _WRITE_ERRNOS and named:
            return err.errno, err.strerror or str(err)
        return None
    if type(err).__name__ == "SafetensorError":  # "Error while serializing: I/O error: No space left on device
        text = str(err)  # (os error 28)", or "... message: "..." }" in older releases
        found = re.search(r"I/O error: (.+?) \(os error (\d+)\)", text)
        if found:
            return int(found.group(2)), found.group(1)
        found = re.search(r"code: (\d+), kind: \w+, message: \"([^\"]+)\"", text)
        return (int(found.group(1)), found.group(2)) if found else (errno.EIO, text.splitlines()[0][:200])
    return None


def _raise_as_write_error(err: BaseException, path: Path, tmp: Path) -> None:
    failure = _write_failure(err, tmp)
    if failure is not None:
        raise WriteError(failure[0], f"cannot write {path}: {failure[1]}") from None


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same extension, so writers that go by it work) to write to; renamed over
    ``path`` when the block ends, removed if it raises. A failed write raises ``WriteError`` naming ``path``."""
    path = Path(path)
    _make_parent(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        _raise_as_write_error(err, path, tmp)
        raise


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _raise_as_write_error(err, path, path.parent)
        raise


def remove_leftovers(path: Path) -> None:
    """Remove the temporary folders ``atomic_folder`` left beside ``path`` in a process that was killed (SIGKILL
    leaves no chance to clean up): their names carry the writer's pid, and that process no longer runs on this
    machine. A live writer's folders stay."""
    for leftover in path.parent.glob(f".{path.name}.*-*"):
        kind, _, rest = leftover.name.removeprefix(f".{path.name}.").partition("-")
        pid = rest.split("-")[0]
        if kind in ("tmp", "old") and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``path`` to fill; swapped in for ``path`` (replacing any previous one) when
    the block ends, removed if it raises. What a killed writer left beside ``path`` is removed first."""
    path = Path(path)
    _make_parent(path)
    remove_leftovers(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    except OSError as err:
        _raise_as_write_error(err, path, path.parent)
        raise
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_as_write_error(err, path, tmp)
        raise


@contextmanager
def exclusive_lock(path: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block: one holder at a time among
    the processes of this machine (``flock``; across machines where the file system supports it). When another
    process holds it, ``on_wait`` is called once with what the holder wrote into the file (its pid and host), then
    the call blocks until the lock is free."""
    path = Path(path)
    _make_parent(path)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                f.seek(0)
                on_wait(f.read().strip() or "another process")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Rows with ``columns`` (default: the first row's keys) as columns; floats with 6 significant digits, None as
    empty, a text holding a comma, quote or line break quoted (RFC 4180)."""
    cols = columns or list(rows[0])

    def cell(value) -> str:
        if value is None:
            return ""
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text

    lines = [",".join(cols)] + [",".join(cell(r.get(c)) for c in cols) for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def write_png(path: Path, image: np.ndarray) -> None:
    """A uint8 H×W×C array (C = 1 or 3) as PNG."""
    from PIL import Image

    with atomic_file(path) as tmp:
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_file(path) as tmp:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub: ** could name allow_pickle
