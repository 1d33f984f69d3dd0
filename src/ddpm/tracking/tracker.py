"""The interface a stage logs through, and the tracker that logs nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MODEL_SHA_TAG = "ddpm.model_sha256"  # on model versions and on the evaluate runs of those weights (tracking.lineage)
FID_REFERENCE_TAG = "ddpm.fid_reference"  # on evaluate runs: the digest of the FID reference they were scored against


class Tracker:
    """What a stage logs to: MLflow's stage run (``runs.StageRun``), its offline spool (``spool.ResilientRun``), or
    nothing (``NullRun``, on processes other than the first). Every method here logs nothing; a tracker overrides
    them all, and the spool replays exactly these (``OPS``)."""

    @property
    def pipeline_run_id(self) -> str | None:
        """The MLflow run of the pipeline execution this stage run belongs to, where one is known."""
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_series(self, series: dict[str, list[float]]) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def log_image(self, image: np.ndarray, name: str, step: int | None = None) -> None:
        pass

    def log_table(self, rows: list[dict], name: str) -> None:
        pass

    def log_json(self, obj: Any, name: str) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_summary(self, metrics: dict[str, float]) -> None:
        pass

    def log_dataset(self, name: str, source: str, digest: str, context: str, tags: dict[str, str]) -> None:
        pass

    def log_model(self, weights: Path, params_file: Path, dataset: str, sha256: str) -> None:
        pass


OPS = tuple(name for name in vars(Tracker) if name.startswith(("log_", "set_")))  # what a tracker logs


class NullRun(Tracker):
    """A Tracker that logs nothing, as a context manager (processes other than the first)."""

    def __enter__(self) -> NullRun:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
