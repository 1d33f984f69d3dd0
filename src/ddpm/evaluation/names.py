"""Names the evaluation shares with the pipeline's files and reports, importable without loading Inception."""

EXTRACTOR_NAME = "inception-v3-tf-ts"  # the FID feature extractor; reference statistics files are keyed by it
ISC_UNAVAILABLE = "unavailable: torch-fidelity's Inception weights are not on this machine (set evaluate.isc_weights)"
