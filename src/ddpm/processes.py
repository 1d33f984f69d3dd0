"""Where and among which processes a stage runs: the project root, its own identity, the DVC process that started
it, and whether a recorded process still runs. An identity is ``pid:start`` (the start time from ``/proc``), so a
reused pid is not taken for the process that had it before. Linux only (``/proc``); elsewhere nothing is found
and nothing is judged dead."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

HOST = socket.gethostname()


def ddpm_command(*args: object) -> str:
    """How to run ``ddpm <args>`` from any shell: this environment's own ``ddpm`` command, by its path."""
    return " ".join([str(Path(sys.executable).parent / "ddpm"), *map(str, args)])


def project_root() -> Path:
    """The repository's root: ``DVC_ROOT``, which DVC points at the main repository also while a stage runs in a
    temporary copy (``dvc exp run --temp``, queue workers), else the working directory."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def _stat(pid: int) -> list[str] | None:
    """Fields 3… of ``/proc/<pid>/stat`` (after the command name), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def identity(pid: int | None = None) -> str:
    """``pid:start`` of process ``pid`` (this one by default); ``pid:`` where /proc cannot tell the start."""
    pid = os.getpid() if pid is None else pid
    fields = _stat(pid)
    return f"{pid}:{fields[19] if fields else ''}"  # field 22 of stat: the start time in ticks since boot


def alive(process: str) -> bool:
    """Whether the process of ``identity`` ``process`` runs on this machine; True when that cannot be told (no
    /proc, or no start time recorded), so nothing is closed on a guess."""
    pid, _, start = process.partition(":")
    if not Path("/proc/self/stat").exists() or not pid.isdigit() or not start:
        return True
    fields = _stat(int(pid))
    return fields is not None and fields[19] == start and fields[0] != "Z"  # not a zombie


def dvc_ancestor() -> str | None:
    """The identity of the nearest ancestor process running dvc (``dvc repro``, ``dvc exp run``, a queue worker's
    ``dvc exp exec-run``): one pipeline execution."""
    pid = os.getppid()
    for _ in range(8):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        fields = _stat(pid)
        if fields is None:
            return None
        if any(Path(arg.decode(errors="replace")).name == "dvc" for arg in cmdline[:2]):
            return f"{pid}:{fields[19]}"
        pid = int(fields[1])
        if pid <= 1:
            return None
    return None
