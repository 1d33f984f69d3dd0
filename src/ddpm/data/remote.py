"""Shards read from a URL (``data.shards_url``): http(s) through the standard library, with bounded retries that
resume a dropped transfer where it stopped; other schemes (s3://, gs://, …) through fsspec, when its backend for
the scheme is installed.

Every failure is one OSError naming the URL. What the bytes must be (size, sha256) is checked by the tar reader
against the manifest, exactly as for a file on disk.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

HTTP_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Retry:
    """How often a request or a dropped transfer is tried again, waiting ``backoff``·2ⁱ seconds before try i+1."""

    attempts: int = 5
    backoff: float = 0.5
    timeout: float = 30.0  # seconds without a byte before a connection counts as dropped


RETRY = Retry()


class RemoteError(OSError):
    """A URL that cannot be read (after the retries): its message names the URL and the last reason."""


def join(base: str, name: str) -> str:
    """``name`` inside the folder URL ``base`` (with or without a trailing slash)."""
    return base.rstrip("/") + "/" + urllib.parse.quote(name)


def scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower()


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason = getattr(err, "reason", None) or err
    return str(reason) or type(err).__name__


def _transient(err: BaseException) -> bool:
    """Worth another try: the connection, not the request (a 4xx other than 408/429 will not change)."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code in (408, 429) or err.code >= 500
    return isinstance(err, (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError))


def _with_retries(url: str, what: str, attempt, retry: Retry):
    """``attempt()`` until it succeeds or ``retry.attempts`` tries have failed (then one RemoteError)."""
    for i in range(retry.attempts):
        try:
            return attempt()
        except RemoteError:
            raise
        except Exception as err:
            if not _transient(err) or i == retry.attempts - 1:
                tries = f" after {i + 1} tries" if i else ""
                raise RemoteError(f"{url}: cannot {what}{tries} ({_reason(err)})") from None
            time.sleep(retry.backoff * 2**i)
    raise AssertionError("unreachable")


def _open_http(url: str, offset: int, timeout: float):
    """A response positioned at byte ``offset`` (a Range request; a server that ignores ranges is skipped ahead)."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    if offset and response.status != 206:
        skip = offset
        while skip:
            block = response.read(min(skip, 1 << 20))
            if not block:
                response.close()
                raise ConnectionError(f"the response ended before byte {offset}")
            skip -= len(block)
    return response


class HttpStream:
    """A readable stream of ``size`` bytes at an http(s) URL that survives dropped connections: a short read is a
    drop, and the rest is requested again from where it stopped (at most ``retry.attempts`` connections in a row
    without progress)."""

    CHUNK = 1 << 20  # bytes asked of the connection at a time: the tar reader's many small reads come from memory

    def __init__(self, url: str, size: int, retry: Retry | None = None):
        retry = retry or RETRY
        self.url, self.size, self.retry, self.pos = url, size, retry, 0  # pos: bytes received
        self._buffer, self._start = b"", 0  # received, not yet read: self._buffer[self._start:]
        self._response = _with_retries(url, "read it", lambda: _open_http(url, 0, retry.timeout), retry)

    def read(self, n: int = -1) -> bytes:
        held = len(self._buffer) - self._start
        left = held + self.size - self.pos
        n = left if n < 0 else min(n, left)
        if held < n:
            self._buffer, self._start = self._buffer[self._start :] + self._receive(max(n - held, self.CHUNK)), 0
        out = self._buffer[self._start : self._start + n]
        self._start += n
        return out

    def _receive(self, n: int) -> bytes:
        """The next ``min(n, bytes left)`` bytes from the connection, reconnecting where a transfer broke off."""
        want = min(n, self.size - self.pos)
        parts, failures = [], 0
        while want > 0:
            try:
                if self._response is None:
                    self._response = _open_http(self.url, self.pos, self.retry.timeout)
                block = self._response.read(want)
                if not block:
                    raise ConnectionError(f"the connection closed at byte {self.pos:,} of {self.size:,}")
            except Exception as err:
                self._drop()
                failures += 1
                if not _transient(err) or failures >= self.retry.attempts:
                    raise RemoteError(
                        f"{self.url}: the transfer broke off at byte {self.pos:,} of {self.size:,} and "
                        f"{failures} tries to resume failed ({_reason(err)})"
                    ) from None
                time.sleep(self.retry.backoff * 2 ** (failures - 1))
                continue
            failures = 0
            parts.append(block)
            self.pos += len(block)
            want -= len(block)
        return b"".join(parts)

    def _drop(self) -> None:
        if self._response is not None:
            try:
                self._response.close()
            except Exception:  # noqa: S110 - a broken connection may fail to close; it is abandoned either way
                pass
            self._response = None

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> HttpStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_stream(url: str, size: int, retry: Retry | None = None):
    """A readable, closable stream of the ``size`` bytes at ``url``."""
    if scheme(url) in HTTP_SCHEMES:
        return HttpStream(url, size, retry)
    return _fsspec(url, lambda fs, path: fs.open(path, "rb"))


def remote_size(url: str, retry: Retry | None = None) -> int | None:
    """The size the server reports for ``url`` (None when it reports none); a missing file or an unreachable
    server is a RemoteError."""
    retry = retry or RETRY
    if scheme(url) in HTTP_SCHEMES:

        def head() -> int | None:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=retry.timeout) as response:
                length = response.headers.get("Content-Length")
                return int(length) if length is not None else None

        return _with_retries(url, "read it", head, retry)
    return _fsspec(url, lambda fs, path: fs.size(path))


def read_url(url: str, retry: Retry | None = None) -> bytes:
    """The whole (small) file at ``url``: a manifest."""
    retry = retry or RETRY
    if scheme(url) in HTTP_SCHEMES:

        def get() -> bytes:
            with urllib.request.urlopen(url, timeout=retry.timeout) as response:
                return response.read()

        return _with_retries(url, "read it", get, retry)
    return _fsspec(url, lambda fs, path: fs.cat_file(path))


def write_file(path, url: str) -> None:
    """Copy the local file ``path`` to ``url`` through fsspec (an object store such as s3://; an http(s) URL is
    read-only here)."""
    if scheme(url) in HTTP_SCHEMES:
        raise RemoteError(f"{url}: http(s) URLs are read-only; write to an object store (s3://…) or a file server")
    _fsspec(url, lambda fs, dest: fs.put_file(str(path), dest), "write it")


def _fsspec(url: str, action, what: str = "read it"):
    try:
        import fsspec  # type: ignore[import-untyped]  # noqa: PLC0415 - only non-http(s) URLs need it
    except ImportError:
        raise RemoteError(f"{url}: {scheme(url)}:// URLs need the fsspec package") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:  # no backend for the scheme: fsspec names the package to install
        raise RemoteError(f"{url}: {err}") from None
    try:
        return action(fs, path)
    except FileNotFoundError:  # fsspec's message is the bare path
        raise RemoteError(f"{url}: cannot {what} (no such file or object)") from None
    except Exception as err:
        raise RemoteError(f"{url}: cannot {what} ({_reason(err)})") from None
