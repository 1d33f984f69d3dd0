"""Git repositories holding this checkout, for runs of the pipeline through DVC."""

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from . import ROOT

DDPM = str(Path(sys.executable).parent / "ddpm")  # the console script of this environment


def sh(args, cwd, env, timeout=900):
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def queue_status(cwd, env, tries: int = 10) -> str:
    """`dvc queue status`, read again when DVC fails on a worker's info file caught half-written (its "unexpected
    error - Expecting value"): a poll of a running queue, not a failure of the run."""
    for _ in range(tries - 1):
        res = subprocess.run(["dvc", "queue", "status"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        if res.returncode == 0:
            return res.stdout
        if "Expecting value" not in res.stderr:
            break
        time.sleep(1)
    return sh(["dvc", "queue", "status"], cwd, env)


def wait_for_queue(cwd, env, names, timeout: float = 900, poll: float = 3) -> dict[str, str]:
    """Poll `dvc queue status` until none of the experiments ``names`` is queued or running; their final
    statuses (``Success``, ``Failed``, ...), by name."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [line.split() for line in queue_status(cwd, env).splitlines()]
        status = {row[1]: row[-1] for row in rows if len(row) > 2 and row[1] in names}
        if len(status) == len(names) and not any(s in ("Queued", "Running") for s in status.values()):
            return status
        assert time.monotonic() < deadline, f"queue still busy after {timeout}s: {status}"
        time.sleep(poll)


def pipeline_env() -> dict[str, str]:
    """The environment for running dvc in a test repository: this venv first, no outer MLflow/DVC settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "DDPM_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env | {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }


def dvc_env(s3) -> dict[str, str]:
    """``pipeline_env()`` with the credentials of the S3 endpoint ``s3`` (helpers.s3); its address only in DVC's
    remote config (``endpointurl``), as the manual sets it up."""
    return pipeline_env() | {key: value for key, value in s3.env.items() if key != "AWS_ENDPOINT_URL"}


def checkout_copy(repo: Path, env: dict[str, str]) -> Path:
    """A git repository at ``repo`` holding this checkout's files (committed or not), without local outputs."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        if (ROOT / rel).is_file() and not rel.startswith(("dvc.lock", "params.yaml", "metrics/", "plots/", "reports/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    # params.yaml as committed: a quickstart run in this checkout leaves its experiment's params in the workspace
    (repo / "params.yaml").write_text(committed("params.yaml"))
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "snapshot"], repo, env)
    return repo


def committed(rel: str) -> str:
    """A file of this checkout as committed (HEAD), or as it stands where this is not a git checkout."""
    res = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else (ROOT / rel).read_text()


def copy_of(repo: Path, dest: Path, keep_checkpoints: bool = True) -> Path:
    """A copy of a pipeline repository at ``dest``: git history and experiments, DVC's cache and run cache, the
    workspace's outputs and its MLflow store (a SQLite file whose absolute artifact paths are moved to the copy, so
    its runs write their artifacts there). DVC's temporary folder (locks, a queue's state) is left behind, and the
    training checkpoints too unless ``keep_checkpoints``."""
    skip = {".dvc/tmp"} | (set() if keep_checkpoints else {"checkpoints"})

    def ignore(folder: str, names: list[str]) -> list[str]:
        rel = Path(folder).relative_to(repo)
        return [n for n in names if str(rel / n).removeprefix("./") in skip]

    shutil.copytree(repo, dest, symlinks=True, ignore=ignore)
    db = dest / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as con:
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for column in [c[1] for c in con.execute(f"PRAGMA table_info({table})") if c[2].upper() != "BLOB"]:
                    con.execute(
                        f"UPDATE {table} SET {column} = replace({column}, ?, ?) WHERE {column} LIKE ?",
                        (str(repo), str(dest), f"%{repo}%"),
                    )
        con.close()
    return dest


def start_queue(repo: Path, env: dict[str, str], jobs: int = 1) -> None:
    """`dvc queue start -j jobs`, its output not captured: the workers it leaves running inherit the command's
    pipes, and a worker that stays up idle would hold a captured pipe open until its reader times out."""
    res = subprocess.run(
        ["dvc", "queue", "start", "-j", str(jobs)],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    assert res.returncode == 0, "dvc queue start failed"
