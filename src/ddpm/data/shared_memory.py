"""What DataLoader workers need of /dev/shm (where they hand batches over), checked before training, and the one
line for a worker's death. Standard library only: the stage harness reads these errors in every stage."""

from __future__ import annotations

import shutil
from pathlib import Path

PREFETCH = 4  # batches each DataLoader worker decodes ahead
WORKER_TIMEOUT = 600  # seconds without a batch from the workers before the stream fails (not for ever)
SHM = Path("/dev/shm")  # where DataLoader workers hand their batches over


def shared_memory_note() -> str:
    """How much shared memory the workers have, and how to give them more in a container."""
    try:
        usage = shutil.disk_usage(SHM)
    except OSError:
        return f"{SHM} is missing"
    return (
        f"{SHM}: {usage.free / 2**20:.0f} MiB free of {usage.total / 2**20:.0f} MiB; Docker gives 64 MiB unless run "
        "with --ipc=host or --shm-size"
    )


def worker_failure(err: BaseException) -> str | None:
    """One line when ``err`` says a DataLoader worker was killed (SIGBUS: a full /dev/shm), died, or sent nothing
    for ``WORKER_TIMEOUT`` s, with the shared memory it had; None for any other error. PyTorch's SIGCHLD handler
    raises "DataLoader worker (pid …) is killed by signal" wherever the training process is, often while the
    loader is reading the dead worker's queue (EOFError, ConnectionResetError): the chain of errors is searched,
    and an EOF or reset raised inside torch.utils.data counts too."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            break
        text = str(seen).strip()
        if isinstance(seen, RuntimeError) and text.startswith("DataLoader"):
            return f"{text.splitlines()[0]} ({_advice()})"
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, (EOFError, ConnectionError)) and _raised_in_torch_data(err):
        return f"DataLoader worker died: {type(err).__name__}: {err} ({_advice()})"
    return None


def _raised_in_torch_data(err: BaseException) -> bool:
    tb = err.__traceback__
    while tb is not None:
        if "torch/utils/data" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


def _advice() -> str:
    return f"{shared_memory_note()}; train.loader_workers=0 decodes in the training process"


def check_shared_memory(workers: int, batch_bytes: int, processes: int = 1) -> None:
    """Refuse, in one line before training starts, a /dev/shm too small for ``processes`` training processes of
    this machine each with ``workers`` DataLoader workers holding ``PREFETCH`` batches (and one being handed
    over) of ``batch_bytes``: under Docker's default 64 MiB a worker dies of SIGBUS or "No space left on device"
    mid-run instead."""
    if workers == 0:
        return
    need = processes * workers * (PREFETCH + 1) * batch_bytes
    try:
        free = shutil.disk_usage(SHM).free
    except OSError:
        free = 0
    if free < need:
        raise OSError(
            f"train.loader_workers: {processes} × {workers} workers × {PREFETCH + 1} batches of "
            f"{batch_bytes / 2**20:.1f} MiB need {need / 2**20:.0f} MiB of shared memory ({shared_memory_note()}); "
            "run the container with --ipc=host or a larger --shm-size, or set train.loader_workers=0"
        )
