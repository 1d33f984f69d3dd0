"""Where each stage reads and writes: the DVC outs of dvc.yaml, relative to the stage's working directory; and
what lives beside them in the project root, outside DVC's reach (checkpoints, the MLflow store)."""

from __future__ import annotations

import os
from pathlib import Path

from ddpm.config import Params
from ddpm.evaluation.fid_reference import EXTRACTOR_NAME
from ddpm.processes import project_root

CHECKPOINTS_ENV = "DDPM_CHECKPOINTS"  # where training checkpoints go instead (e.g. a file system every node shares)


def checkpoint_root(root: Path | None = None) -> Path:
    """Where training keeps its run folders of checkpoints: ``$DDPM_CHECKPOINTS``, else ``checkpoints/`` in the
    project root (``root``, by default ``project_root()``). Never a DVC out and never inside a temporary copy, so
    neither DVC's cleanup of a killed queued experiment nor a change of params removes them."""
    if os.environ.get(CHECKPOINTS_ENV):
        return Path(os.environ[CHECKPOINTS_ENV])
    root = project_root() if root is None else root.resolve()
    return Path("checkpoints") if root == Path.cwd().resolve() else root / "checkpoints"


class Paths:
    def __init__(self, params: Params, root: Path = Path(".")):
        ds = params.dataset.value
        self.params_file = root / "params.yaml"
        self.checked = root / "outputs" / "checked.txt"  # the check stage's out, a dependency of every other stage
        self.shards = root / "data" / "shards" / ds
        key = f"{ds}-{params.data.resolution}-{EXTRACTOR_NAME}"
        self.fid_refs = {split: root / "data" / "fid_ref" / f"{key}-{split}.npz" for split in ("train", "test")}
        self.model = root / "models" / "ema.safetensors"
        self.checkpoints = checkpoint_root()
        self.samples = root / "outputs" / "samples"
        self.sample_grid = root / "outputs" / "samples.png"
        self.fid_ref_metrics = root / "metrics" / "fid_ref.json"
        self.train_metrics = root / "metrics" / "train.json"
        self.sample_metrics = root / "metrics" / "sample.json"
        self.eval_metrics = root / "metrics" / "evaluate.json"
        self.summary_metrics = root / "metrics" / "summary.json"  # the headline numbers (`dvc exp show`)
        self.train_plot = root / "plots" / "train_loss.csv"
        self.rd_plot = root / "plots" / "rate_distortion.csv"
        self.reports = root / "reports"
        self.report = self.reports / "results.md"
        self.paper_tables = self.reports / "paper_tables.md"
        self.figures = root / "outputs" / "figures"
        self.reconstruction_metrics = root / "metrics" / "reconstruction.json"
        self.ddim_table = root / "metrics" / "ddim_table"
        self.solver_table = root / "metrics" / "solver_table"
        self.fid_vs_nfe_plot = root / "plots" / "fid_vs_nfe.csv"

    def ddim_cell(self, steps: str, eta: str) -> Path:
        """One DDIM Table 1 cell's metrics file (named as dvc.yaml's matrix names it)."""
        return self.ddim_table / f"S{steps}-eta{eta}.json"

    def solver_cell(self, sampler: str, nfe: str) -> Path:
        """One FID-vs-NFE cell's metrics file (named as dvc.yaml's matrix names it)."""
        return self.solver_table / f"{sampler}-NFE{nfe}.json"


def require(path: Path, what: str, producer: str) -> Path:
    """Fail before any work when an input produced by an earlier stage is missing."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{what}: {path} not found; run the {producer} stage")
    return path
