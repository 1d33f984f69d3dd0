"""Running one pipeline stage: validate params first, fail with one line, log the stage to MLflow."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .config import Params, load_params
from .fid import EXTRACTOR_NAME
from .fileio import atomic_write_text

# Errors reported as one line (exit status 2) rather than a traceback: bad params or inputs, a diverged loss, and
# failed reads or writes (a full disk, a read-only folder: OSError names the file and the reason).
USER_ERRORS = (ValueError, OSError, FloatingPointError)


class Paths:
    """Where each stage reads and writes (the DVC outs in dvc.yaml), relative to the project root."""

    def __init__(self, params: Params, root: Path = Path(".")):
        ds = params.dataset.value
        self.shards = root / "data" / "shards" / ds
        key = f"{ds}-{params.data.resolution}-{EXTRACTOR_NAME}"
        self.fid_refs = {split: root / "data" / "fid_ref" / f"{key}-{split}.npz" for split in ("train", "test")}
        self.model = root / "models" / "ema.safetensors"
        self.checkpoints = root / "checkpoints"
        self.samples = root / "outputs" / "samples"
        self.sample_grid = root / "outputs" / "samples.png"
        self.train_metrics = root / "metrics" / "train.json"
        self.eval_metrics = root / "metrics" / "evaluate.json"
        self.train_plot = root / "plots" / "train_loss.csv"
        self.rd_plot = root / "plots" / "rate_distortion.csv"
        self.report = root / "reports" / "results.md"
        self.paper_tables = root / "reports" / "paper_tables.md"
        self.figures = root / "outputs" / "figures"
        self.reconstruction_metrics = root / "metrics" / "reconstruction.json"
        self.ddim_table = root / "metrics" / "ddim_table"

    def ddim_cell(self, steps: str, eta: str) -> Path:
        """One DDIM Table 1 cell's metrics file (named as dvc.yaml's matrix names it)."""
        return self.ddim_table / f"S{steps}-eta{eta}.json"


def require(path: Path, what: str, producer: str) -> Path:
    """Fail before any work when an input produced by an earlier stage is missing."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{what}: {path} not found; run the {producer} stage")
    return path


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    cols = list(rows[0])
    def cell(value) -> str:
        if value is None:
            return ""
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    lines = [",".join(cols)] + [",".join(cell(r.get(c)) for c in cols) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def stage_main(stage: str, body: Callable[[Params, Paths, object], None], params_path: str = "params.yaml") -> None:
    """Validate params, open the MLflow stage run, run ``body(params, paths, run)``; user errors exit 2 in one line."""
    try:
        params = load_params(params_path)
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    from .spool import ResilientRun  # imported late: validation must not wait for MLflow
    from .tracking import NullRun, StageRun, project_root

    # A dead tracking server should cost seconds, not MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    experiment = f"ddpm-{params.dataset.value}"
    # Under `accelerate launch` only the first process logs.
    if int(os.environ.get("RANK", "0")) == 0:
        tracker = ResilientRun(StageRun(stage, params.model_dump(mode="json"), experiment),
                               project_root() / "mlflow-pending")
    else:
        tracker = NullRun()
    try:
        with tracker as run:
            body(params, Paths(params), run)
    except USER_ERRORS as err:
        sys.exit(f"error: {stage}: {err}")
