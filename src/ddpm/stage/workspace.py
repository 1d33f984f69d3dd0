"""One pipeline execution per workspace, and one params.yaml per execution.

DVC lets a second ``dvc exp run`` start in a workspace where one already runs: it rewrites params.yaml and DVC's
own experiment refs under the first, whose later stages then train with the other's params and whose experiment
is then lost. So the first stage of an execution in the workspace (not in a queue worker's or ``--temp`` copy)
claims the workspace in DVC's experiment lock (``.dvc/tmp/exps/rwlock``) for as long as the DVC process runs, held
by a small watcher process that releases it when that process ends: DVC then refuses any other ``dvc exp run``
(workspace, ``--temp`` or ``--queue``) at its start, before it touches a file, and a stage of another DVC process
(``dvc repro``) fails in one line. A second run started in the seconds before the claim has already rewritten
params.yaml and DVC's experiment records: the first run's first stage finds params.yaml is not what its own
``dvc exp run -S …`` composed (``asked_params``), puts its params back and stops before any work.

And every stage keeps the bytes of params.yaml its execution started with (``.dvc/tmp/ddpm-params/``) and puts
them back if another process changed the file meanwhile, keeping the replaced file and saying so. Stages run
outside DVC are left alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ddpm.processes import alive, dvc_ancestor, identity, project_root
from ddpm.storage.files import write_text

from .asked_params import asked_params

FOLDER = Path(".dvc") / "tmp" / "ddpm-params"
EXPS = Path(".dvc") / "tmp" / "exps"  # DVC's experiment lock: its file rwlock, guarded by rwlock.lock
# What DVC's `dvc exp run` takes: the workspace (to stash and change files) and its executor refs.
CLAIMED = ("workspace", "refs/exps/exec")


class WorkspaceBusy(ValueError):
    """Another DVC process's pipeline runs in this workspace."""


def _snapshot(cwd: Path) -> Path | None:
    driver = dvc_ancestor()
    if driver is None or not (cwd / ".dvc").is_dir():
        return None
    return cwd / FOLDER / f"{driver.replace(':', '-')}.yaml"


def hold_params(params_path: Path, stage: str, cwd: Path = Path(".")) -> None:
    """Record ``params_path`` for this DVC execution (its first stage), or restore the recorded bytes if another
    process changed the file since; prints one warning naming where the replaced file is kept."""
    snapshot = _snapshot(cwd)
    if snapshot is None or not params_path.is_file():
        return
    now = params_path.read_bytes()
    if not snapshot.is_file():
        for stale in snapshot.parent.glob("*.yaml"):
            if not stale.name.startswith("replaced-") and not alive(stale.stem.replace("-", ":", 1)):
                stale.unlink(missing_ok=True)
        asked = asked_params(snapshot.stem.replace("-", ":", 1), cwd.resolve())
        if asked is not None and asked != now:
            kept = _keep(now, snapshot.parent, stage)
            write_text(params_path, asked.decode())
            raise WorkspaceBusy(
                f"another `dvc exp run` started in the same seconds rewrote {params_path} (its file is kept as "
                f"{kept}) and DVC's record of this experiment: this one stops before any work; run it again, "
                "and concurrent experiments with `dvc exp run --queue` or `--temp`"
            )
        write_text(snapshot, now.decode())
        return
    started = snapshot.read_bytes()
    if now == started:
        return
    kept = _keep(now, snapshot.parent, stage)
    write_text(params_path, started.decode())
    print(
        f"warning: {stage}: {params_path} changed while this pipeline ran (another `dvc exp run` in this "
        f"workspace?); put back this pipeline's params, the other file is kept as {kept}. Run concurrent "
        "experiments with `dvc exp run --queue` or `--temp`",
        file=sys.stderr,
    )


def _keep(found: bytes, folder: Path, stage: str) -> Path:
    kept = folder / f"replaced-{time.strftime('%Y%m%dT%H%M%S')}-{stage}.yaml"
    write_text(kept, found.decode())
    return kept


def _command(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return f"PID {pid}"
    args = [a for a in args if a]
    if len(args) > 1 and Path(args[0]).name.startswith("python"):
        args = args[1:]  # the interpreter of DVC's entry script
    return " ".join(args)


OURS = "the pipeline of "  # how a claim names itself in DVC's lock file


def claim_workspace(stage: str, cwd: Path = Path("."), patience_s: float = 30.0) -> None:
    """Claim the workspace for the DVC process running this stage, once per execution (see the module's doc);
    ``WorkspaceBusy`` when another DVC process's pipeline holds it. DVC's own short holds (another ``dvc exp run``
    stashing its params) are waited for, up to ``patience_s``."""
    driver = dvc_ancestor()
    if driver is None or cwd.resolve() != project_root() or not (cwd / ".dvc").is_dir():
        return  # outside DVC, or a queue worker's or --temp copy (those run side by side by design)
    if (cwd / FOLDER / f"{driver.replace(':', '-')}.yaml").is_file():
        return  # an earlier stage of this execution claimed it (and then kept its params)
    lock_dir = cwd / EXPS
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + patience_s
    while True:
        holder = _claim(lock_dir, driver)
        if holder is None:
            return
        if holder["cmd"].startswith(OURS) or time.monotonic() > deadline:
            raise WorkspaceBusy(
                f"another pipeline runs in this workspace ({holder['cmd']}); one at a time: run "
                "concurrent experiments with `dvc exp run --queue` or `--temp`"
            )
        time.sleep(0.5)


def _claim(lock_dir: Path, driver: str) -> dict | None:
    """Write this execution's claim unless a live process holds the workspace (returned then)."""
    from dvc.fs import localfs
    from dvc.rwlock import _edit_rwlock

    with _edit_rwlock(str(lock_dir), localfs, False) as lock:
        writes = lock["write"]
        holder = writes.get(CLAIMED[0])
        if holder and holder["cmd"].endswith(f"[{driver}]"):
            return None  # this execution claimed it at an earlier stage
        if holder and _holds(holder):
            return holder
        pid = int(driver.split(":")[0])
        watcher = subprocess.Popen(
            [sys.executable, "-m", "ddpm.stage.workspace", driver, str(lock_dir.resolve())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        info = {"pid": watcher.pid, "cmd": f"{OURS}{_command(pid)} [{driver}]"}
        for name in CLAIMED:
            writes[name] = info
    return None


def _holds(holder: dict) -> bool:
    """Whether a hold in DVC's lock is live: a pipeline's claim while its DVC process runs (whatever became of its
    watcher: killed with a process group, or copied along with the workspace), DVC's own while its process runs."""
    driver = holder["cmd"].rsplit("[", 1)[-1].rstrip("]") if holder["cmd"].startswith(OURS) else ""
    return alive(driver) if ":" in driver else alive(identity(int(holder["pid"])))


def _release_when_gone(driver: str, lock_dir: str) -> None:
    """The watcher: wait for the DVC process ``driver`` to end, then remove this process's claim."""
    from os import getpid

    while alive(driver):
        time.sleep(0.2)
    from dvc.fs import localfs
    from dvc.rwlock import _edit_rwlock

    with _edit_rwlock(lock_dir, localfs, False) as lock:
        writes = lock.get("write", {})
        for name in CLAIMED:
            if name in writes and int(writes[name]["pid"]) == getpid():
                del writes[name]


if __name__ == "__main__":
    _release_when_gone(sys.argv[1], sys.argv[2])
