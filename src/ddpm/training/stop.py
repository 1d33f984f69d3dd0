"""Stopping training cleanly: the first Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the end of the step it
is in, where it saves a checkpoint to resume from; a second one stops at once (Python's KeyboardInterrupt)."""

from __future__ import annotations

import signal
import threading


class Interrupted(KeyboardInterrupt):
    """Training stopped on request; the message says at which step and what was saved."""


class StopRequest:
    """While the block runs (in the main thread), SIGINT and SIGTERM set ``requested`` instead of ending the
    process; the handlers before it come back at its end."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._before: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # asked twice: stop now
            self._restore()
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        print(
            f"\ntrain: {self.received.name} received: stopping after this step and saving a checkpoint "
            "(again to stop at once)",
            flush=True,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._before = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._before.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._before = {}
