"""ddpm-pipeline: DDPM, Improved DDPM and DDIM as a library (math and models; no DVC or MLflow inside)."""
