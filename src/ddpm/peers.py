"""Every process of a group heard from: a heartbeat through the group's rendezvous store, and a wait for all
processes that notices a peer gone silent (its node stopped or lost the network) within ``PEER_SILENCE``, however
long the legitimate wait (hours of uneven sampling, a run's lock held by another experiment).

Waiting goes through the store rather than a collective: a collective either times out (NCCL's watchdog ends the
run while the slowest rank finishes its share) or, with a long timeout, waits for a vanished peer as long.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta

import torch.distributed as dist

# The process group's timeout: the longest any collective may wait (a checkpoint written to a slow shared disk
# while the others reach the next step); longer waits go through ``wait_for_all``.
GROUP_TIMEOUT = timedelta(minutes=30)
# How long a peer may go unheard before a waiting process gives up on it, and how often each process says it lives.
PEER_SILENCE = timedelta(seconds=float(os.environ.get("DDPM_PEER_SILENCE_S", "120")))
HEARTBEAT = PEER_SILENCE / 8
POLL = 0.05  # seconds between looks at the store, doubling up to ``HEARTBEAT``


class PeerLost(RuntimeError):
    """A peer that stopped being heard from while this process waited for it (the message names it)."""


def _prefix() -> str:
    # An elastic restart reuses the launcher's store: its keys start afresh.
    return f"ddpm/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"


class _Heartbeat:
    """This process's beats: the store key ``alive/<rank>`` counts up every ``HEARTBEAT`` from a daemon thread
    (a counter, not a timestamp: the nodes' clocks need not agree)."""

    def __init__(self, store, rank: int):
        self.rank = rank
        self.store = store.clone() if hasattr(store, "clone") else store  # a connection of the thread's own
        self.store.set(_prefix() + f"host/{rank}", socket.gethostname())
        self.store.add(_prefix() + f"alive/{rank}", 1)
        self.thread = threading.Thread(target=self._beat, name="ddpm-heartbeat", daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT.total_seconds())
            try:
                self.store.add(_prefix() + f"alive/{self.rank}", 1)
            except Exception:  # noqa: BLE001 - the store is gone: the group's next wait or collective says so
                return


_heartbeat: _Heartbeat | None = None
_waits = 0  # wait_for_all calls so far: every process makes the same ones, in the same order


def start_heartbeat() -> None:
    """Start this process's heartbeat (once; a group of one has none). Every process of a group that calls
    ``wait_for_all`` must start it when the group forms, so that peers can tell its silence from work."""
    global _heartbeat
    if _heartbeat is None and dist.is_initialized() and dist.get_world_size() > 1:
        _heartbeat = _Heartbeat(dist.distributed_c10d._get_default_store(), dist.get_rank())


def wait_for_all() -> None:
    """Return when every process of the default group has called this (as often); raise ``PeerLost`` naming a
    process that has not been heard from for ``PEER_SILENCE`` meanwhile. A peer that never started a heartbeat
    is waited for up to ``GROUP_TIMEOUT``."""
    global _waits
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    start_heartbeat()
    store, rank, world = dist.distributed_c10d._get_default_store(), dist.get_rank(), dist.get_world_size()
    _waits += 1
    key = _prefix() + f"wait/{_waits}/"
    store.set(key + str(rank), "1")
    heard: dict[int, tuple[int, float]] = {}  # peer → (its beat count, when this process last saw it change)
    started, pause = time.monotonic(), POLL
    while True:
        missing = [r for r in range(world) if not store.check([key + str(r)])]
        if not missing:
            return
        now = time.monotonic()
        for r in missing:
            alive = _prefix() + f"alive/{r}"
            if not store.check([alive]):
                if now - started > GROUP_TIMEOUT.total_seconds():
                    raise PeerLost(_silent(store, r, now - started, "never started its heartbeat"))
                continue
            beats = int(store.get(alive))
            if r not in heard or heard[r][0] != beats:
                heard[r] = (beats, now)
            elif now - heard[r][1] > PEER_SILENCE.total_seconds():
                raise PeerLost(_silent(store, r, now - heard[r][1], "has not been heard from"))
        time.sleep(pause)
        pause = min(pause * 2, HEARTBEAT.total_seconds())


def _silent(store, rank: int, seconds: float, what: str) -> str:
    host_key = _prefix() + f"host/{rank}"
    host = store.get(host_key).decode() if store.check([host_key]) else "an unknown host"
    return (
        f"process {rank} (on {host}) {what} for {seconds:.0f} s while this process waited for it (its node "
        "stopped or lost the network?)"
    )
