"""What a stage run read, in its MLflow run: the data split as a dataset input, the weights by their sha256."""

from __future__ import annotations

from pathlib import Path

from ddpm.data.shards import split_identity
from ddpm.evaluation.fid_reference import reference_digest
from ddpm.storage.files import file_digest

from .tracker import FID_REFERENCE_TAG, MODEL_SHA_TAG, Tracker


def log_inputs(
    run: Tracker,
    shard_dir: Path,
    split: str,
    context: str,
    model: Path | None = None,
    fid_reference: Path | None = None,
    url: str | None = None,
) -> None:
    """The split as an MLflow dataset input (``context``: training or evaluation): name, digest of its shards'
    hashes, the shards' folder as source, the image count and origin as tags; and the sha256 of the weights the
    run used, if any (how the report finds their registered version), and the FID reference it was scored against
    (which runs' FIDs compare). With ``url`` the shards are read from there (``data.shards_url``)."""
    data = split_identity(shard_dir, split, url)
    run.log_dataset(data.pop("name"), url or str(Path(shard_dir).resolve()), data.pop("digest"), context, data)
    if model is not None:
        run.set_tags({MODEL_SHA_TAG: file_digest(model)})
    if fid_reference is not None:
        run.set_tags({FID_REFERENCE_TAG: reference_digest(fid_reference)})
