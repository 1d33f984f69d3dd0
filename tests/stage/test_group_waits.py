"""A process group that can neither hang nor be killed by a long wait: a wrong network interface or a peer that
never comes fails at the start in one line; a peer that goes silent (a frozen or vanished node) is named within
the silence limit while a peer that merely works long is waited for."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import free_port

PLACE = "from ddpm.stage.harness import _place; _place('train'); print('joined', flush=True)"


def _rank_env(rank: int, port: int, **extra: str) -> dict[str, str]:
    """What `accelerate launch --multi_gpu --num_processes 2` (ACCELERATE_USE_CPU=1) gives each of its processes."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return env | {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def _start(ranks, **extra: str) -> list[subprocess.Popen]:
    port = free_port()
    return [
        subprocess.Popen(
            [sys.executable, "-c", PLACE],
            env=_rank_env(rank, port, **extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in ranks
    ]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_wrong_network_interface_fails_at_the_start_in_one_line_naming_the_variable():
    processes = _start((0, 1), GLOO_SOCKET_IFNAME="nosuch0")
    for p in processes:
        _, stderr = p.communicate(timeout=120)
        assert p.returncode == 1
        assert "Traceback" not in stderr
        (line,) = _error_lines(stderr)
        assert line.startswith("error: train: the process group cannot connect:")
        assert "nosuch0" in line and "GLOO_SOCKET_IFNAME" in line and "NCCL_SOCKET_IFNAME" in line


def test_a_peer_that_never_starts_ends_the_stage_after_the_connect_timeout_in_one_line():
    (alone,) = _start((0,), DDPM_CONNECT_TIMEOUT_S="3")
    _, stderr = alone.communicate(timeout=120)
    assert alone.returncode == 1
    (line,) = _error_lines(stderr)
    assert "did not connect within 3 s" in line and "MASTER_ADDR=127.0.0.1" in line and "GLOO_SOCKET_IFNAME" in line


def _silent_peer(rank: int, port: int, out: str) -> None:
    import datetime

    import torch.distributed as dist

    from ddpm import peers

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60)
    )
    peers.start_heartbeat()
    if rank == 1:  # a node that freezes or drops off the network: its connections stay open, nothing answers
        os.kill(os.getpid(), signal.SIGSTOP)
    start = time.monotonic()
    try:
        peers.wait_for_all()
        Path(out).write_text("returned")
    except peers.PeerLost as err:
        Path(out).write_text(f"{time.monotonic() - start:.1f}\n{err}")


def test_a_waiting_process_names_a_peer_gone_silent_within_the_silence_limit(tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    monkeypatch.setenv("DDPM_PEER_SILENCE_S", "2")  # read by the spawned processes as they import ddpm.peers
    out = tmp_path / "rank0"
    context = mp.spawn(_silent_peer, args=(free_port(), str(out)), nprocs=2, join=False)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        seconds, message = out.read_text().split("\n", 1)
    finally:
        for process in context.processes:
            process.kill()
            process.join()
    assert 2.0 <= float(seconds) < 60
    assert message.startswith("process 1 (on ") and "has not been heard from for" in message
    assert "its node stopped or lost the network?" in message


def test_a_stage_names_a_lost_peer_and_how_to_resume():
    from ddpm.peers import PeerLost
    from ddpm.stage.placement import Placement

    line = Placement.lost_peer(PeerLost("process 1 (on node7) has not been heard from for 121 s while …"))
    assert line is not None and line.startswith("process 1 (on node7)") and "Rerun the stage on every node" in line
