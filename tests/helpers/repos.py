"""Git repositories holding this checkout, for runs of the pipeline through DVC."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import ROOT


def sh(args, cwd, env, timeout=900):
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


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
