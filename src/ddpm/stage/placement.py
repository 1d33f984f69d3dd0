"""Where a compute stage runs: one device and process group from Accelerate, handed to the library explicitly,
and what the stage cost there (device, processes, wall time, peak memory) for its metrics and MLflow run."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from ddpm.parallel import WorkShare
from ddpm.peers import GROUP_TIMEOUT, PeerLost, start_heartbeat
from ddpm.precision import IEEE, set_fp32_precision

# How long the processes of a group may take to connect and exchange a first message: a wrong network interface
# fails the stage after this, not at its first collective hours later.
CONNECT_TIMEOUT = float(os.environ.get("DDPM_CONNECT_TIMEOUT_S", "300"))
INTERFACES = (
    "set GLOO_SOCKET_IFNAME (CPU processes) or NCCL_SOCKET_IFNAME (GPUs) to the network interface the nodes reach "
    "each other on (`ip -brief address` lists them)"
)

# What torch.distributed's backends say when another process of the group went away.
_LOST = (
    "Connection closed by peer",
    "Connection reset by peer",
    "connectFullMesh failed",
    "Socket Timeout",
    "NCCL communicator was aborted",
    "Watchdog caught collective operation timeout",
    "Broken pipe",
)


RERUN = (
    "Rerun the stage on every node: it resumes from what was saved (training's newest checkpoint, finished sample "
    "chunks)"
)


def _first_line(err: BaseException) -> str:
    """An error's first line without the source location torch's C++ prefixes it with."""
    text = str(err).strip()
    return re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]) if text else type(err).__name__


def _never_connected() -> None:
    print(
        f"error: the process group did not connect within {CONNECT_TIMEOUT:.0f} s (are all nodes started, and is "
        f"MASTER_ADDR={os.environ.get('MASTER_ADDR', '?')} reachable?); {INTERFACES}",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)


@dataclass
class Placement:
    """The process group of a stage started by ``launcher`` (``python`` or ``accelerate launch``)."""

    state: PartialState
    started: float = field(default_factory=time.perf_counter)
    auto: dict[str, str] = field(default_factory=dict)  # what each ``auto`` setting became on this device

    @classmethod
    def start(cls) -> Placement:
        """Join the launcher's process group and exchange a first message: a group that cannot connect (a wrong
        network interface) ends the process in one line within ``CONNECT_TIMEOUT`` seconds; then every process
        starts its heartbeat, by which waiting peers tell a long job from a vanished node."""
        watchdog = threading.Timer(CONNECT_TIMEOUT, _never_connected)
        watchdog.daemon = True
        watchdog.start()
        try:
            # As Accelerator does: ACCELERATE_USE_CPU=1 makes ranks on CPU a gloo group (PartialState alone ignores
            # it, and each rank would run the whole stage alone).
            state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=GROUP_TIMEOUT)
            if state.num_processes > 1:
                dist.all_reduce(torch.ones(1, device=state.device))  # NCCL connects at its first collective
                start_heartbeat()
        except RuntimeError as err:
            if "Unable to find address for" in str(err) or "no socket interface" in str(err).lower():
                raise ValueError(f"the process group cannot connect: {_first_line(err)}; {INTERFACES}") from None
            raise
        finally:
            watchdog.cancel()
        set_fp32_precision(IEEE)  # "fp32" is IEEE float32 unless a param asks for TF32 by name
        if state.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(state.device)
        return cls(state)

    def agree(self, name: str, content: bytes) -> None:
        """Check that every process of the group read the same ``content`` (e.g. params.yaml: nodes that run
        different checkouts would train different models under one run)."""
        if self.state.num_processes == 1:
            return
        mine = (hashlib.sha256(content).hexdigest(), socket.gethostname())
        every: list[tuple[str, str]] = [mine] * self.state.num_processes  # filled by all_gather_object
        dist.all_gather_object(every, mine)
        for rank, (digest, host) in enumerate(every):
            if digest != every[0][0]:
                raise ValueError(
                    f"{name} of process {rank} (on {host}) differs from process 0's (on {every[0][1]}); start "
                    "every node from the same checkout and params"
                )

    @staticmethod
    def lost_peer(err: BaseException) -> str | None:
        """One line for an error that means another process of the group stopped (a node died, was killed or lost
        its network), naming its address where the backend says it; None for any other error."""
        if isinstance(err, PeerLost):
            return f"{err}. {RERUN}"
        text = str(err)
        if not any(sign in text for sign in _LOST):
            return None
        where = re.search(r"\[([\w.:-]+)\]:(\d+)", text)  # the peer's address, as gloo writes it
        peer = f"the process at {where.group(1)}:{where.group(2)}" if where else "another process of the group"
        reason = _first_line(err)
        return f"lost contact with {peer} (its node or process stopped?): {reason.split('. ')[0][:200]}. {RERUN}"

    @property
    def device(self) -> torch.device:
        return self.state.device

    @property
    def share(self) -> WorkShare:
        return WorkShare(self.state.process_index, self.state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.state.is_main_process

    def summary(self) -> dict:
        """Device, process count, wall time so far, peak accelerator memory (0 on a CPU), this process's peak
        resident memory, and what the params' ``auto`` settings became on this device."""
        accel = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else 0
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
        return {
            "device": str(self.device),
            "num_processes": self.state.num_processes,
            "wall_seconds": round(time.perf_counter() - self.started, 3),
            "peak_accelerator_memory_gib": round(accel / 2**30, 4),
            "peak_host_memory_gib": round(rss_kib / 2**20, 4),
            "auto": dict(self.auto),
        }
