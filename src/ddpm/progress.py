"""Progress of long loops: a bar with rate and ETA on a terminal; in a log (stderr not a terminal), one line every
``LOG_EVERY`` percent, so that CI logs and `dvc repro > log` carry no carriage-return spam."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_EVERY = 10  # percent


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _LogLines:
    """tqdm's ``update`` / ``set_postfix`` / ``close`` as plain lines at every ``LOG_EVERY`` percent."""

    def __init__(self, desc: str, total: int | None, unit: str, initial: int = 0):
        self.desc, self.total, self.unit = desc, total, unit
        self.n = self.start_n = initial
        self.start, self.postfix, self.next_pct = time.perf_counter(), "", LOG_EVERY
        if total:
            done_pct = 100 * initial // total
            self.next_pct = (done_pct // LOG_EVERY + 1) * LOG_EVERY

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and 100 * self.n >= self.next_pct * self.total and self.n < self.total:
            self._line(f"{100 * self.n // self.total}%")
            self.next_pct = (100 * self.n // self.total // LOG_EVERY + 1) * LOG_EVERY

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, head: str) -> None:
        elapsed = time.perf_counter() - self.start
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        left = f", ETA {_duration((self.total - self.n) / rate)}" if self.total and rate > 0 and head != "done" else ""
        of = f"/{self.total}" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(
            f"{self.desc}: {head} ({self.n}{of} {self.unit}) {rate:,.1f} {self.unit}/s, {_duration(elapsed)} "
            f"elapsed{left}{extra}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.n > self.start_n:
            self._line("done")

    def __enter__(self) -> _LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(desc: str | None, total: int | None, unit: str, *, initial: int = 0, enabled: bool = True):
    """A progress display with ``update(n)``, ``set_postfix(**values)`` and ``close()`` (a context manager)."""
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, mininterval=0.5, dynamic_ncols=True)
    return _LogLines(desc or "", total, unit, initial)


class Counted:
    """An iterator of image batches that knows how many images it holds (``images``), so that progress can show
    an ETA; single pass, like the generator it wraps."""

    def __init__(self, batches: Iterable, images: int):
        self._batches, self.images = iter(batches), images

    def __iter__(self) -> Counted:
        return self

    def __next__(self):
        return next(self._batches)


def tracked(
    items: Iterable[T], desc: str | None, total: int | None, unit: str, size=lambda item: 1, enabled: bool = True
) -> Iterator[T]:
    """``items`` unchanged, advancing a ``progress`` display by ``size(item)`` after each."""
    bar = progress(desc, total, unit, enabled=enabled)
    try:
        for item in items:
            yield item
            bar.update(size(item))
    finally:
        bar.close()


def rounded(values: dict) -> str:
    """Numbers for a log line: ``key=value`` pairs, floats to 4 significant digits."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
