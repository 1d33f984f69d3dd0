"""Names the evaluation shares with the pipeline's files and reports, importable without loading Inception."""

from pathlib import Path

from ddpm.storage.files import file_digest

EXTRACTOR_NAME = "inception-v3-tf-ts"  # the FID feature extractor; reference statistics files are keyed by it
ISC_UNAVAILABLE = ("unavailable: torch-fidelity's Inception weights are not here and were not fetched; fetch them "
                   "with `python -m ddpm.evaluation.isc_weights` (or set evaluate.isc_weights to a copy)")


def reference_digest(path: Path) -> str:
    """What names an FID reference in MLflow and in the tables: the first 16 hex digits of its file's sha256."""
    return file_digest(path)[:16]
