"""A stage never outlives the DVC process that runs it: killed alone (SIGTERM to `dvc`), DVC leaves its stage
running, which would go on to write outputs, register a model and log runs that no experiment records. A stage
started by DVC (``DVC_STAGE`` is set) watches its nearest `dvc` ancestor and, once it is gone, sends itself SIGTERM:
training stops after its current step with a checkpoint; any other stage ends there (its finished work is kept
in whole files)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from ddpm.processes import alive, dvc_ancestor

POLL = 1.0  # seconds between looks


def watch(process: str, on_gone: Callable[[], None]) -> threading.Thread:
    """Call ``on_gone`` (from a daemon thread) once the process of identity ``process`` (``pid:start``) ended."""

    def run() -> None:
        while alive(process):
            time.sleep(POLL)
        on_gone()

    thread = threading.Thread(target=run, name="ddpm-dvc-watch", daemon=True)
    thread.start()
    return thread


def stop_with_dvc(stage: str) -> None:
    """Under DVC, stop this stage (SIGTERM to itself) when the `dvc` process that runs it ends."""
    driver = dvc_ancestor() if "DVC_STAGE" in os.environ else None
    if driver is None:
        return

    def gone() -> None:
        pid = driver.split(":")[0]
        print(f"error: {stage}: the dvc process that ran this stage (pid {pid}) ended; stopping", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)

    watch(driver, gone)
