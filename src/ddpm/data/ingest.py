"""The prepare stage's work: every split of the configured source as deterministic shards with a manifest (the
readers are in ``sources``, the shard format in ``shards``)."""

from __future__ import annotations

from pathlib import Path

from ddpm.config import Params

from .shards import write_dataset
from .sources import SPLITS, check_source, iter_split, source_fingerprint


def write_shards(params: Params, out_dir: Path) -> dict:
    """Every split of the configured source as deterministic shards in ``out_dir``; returns the manifest."""
    check_source(params)
    meta = {
        "dataset": params.dataset.value,
        "resolution": params.data.resolution,
        "source_fingerprint": source_fingerprint(params),
    }
    skipped: dict[str, list[str]] = {}
    return write_dataset(
        {s: iter_split(params, s, skipped) for s in SPLITS}, out_dir, params.data.shard_size, meta, skipped
    )
