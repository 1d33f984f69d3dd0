"""How an FID reference is named, importable without loading Inception: the feature extractor's name (reference
statistics files are keyed by it) and the digest that names a reference file in MLflow and in the tables."""

from pathlib import Path

from ddpm.storage.files import file_digest

EXTRACTOR_NAME = "inception-v3-tf-ts"


def reference_digest(path: Path) -> str:
    """The first 16 hex digits of the reference file's sha256."""
    return file_digest(path)[:16]
