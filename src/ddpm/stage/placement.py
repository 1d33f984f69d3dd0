"""Where a compute stage runs: one device and process group from Accelerate, handed to the library explicitly,
and what the stage cost there (device, processes, wall time, peak memory) for its metrics and MLflow run."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from ddpm.parallel import WorkShare


@dataclass
class Placement:
    """The process group of a stage started by ``launcher`` (``python`` or ``accelerate launch``)."""

    state: PartialState
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls) -> Placement:
        # As Accelerator does: ACCELERATE_USE_CPU=1 makes ranks on CPU a gloo group (PartialState alone ignores it,
        # and each rank would run the whole stage alone).
        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
        if state.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(state.device)
        return cls(state)

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
        """Device, process count, wall time so far, peak accelerator memory (0 on a CPU) and this process's peak
        resident memory."""
        accel = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else 0
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
        return {
            "device": str(self.device),
            "num_processes": self.state.num_processes,
            "wall_seconds": round(time.perf_counter() - self.started, 3),
            "peak_accelerator_memory_gib": round(accel / 2**30, 4),
            "peak_host_memory_gib": round(rss_kib / 2**20, 4),
        }
