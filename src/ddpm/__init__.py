"""ddpm-pipeline: DDPM, Improved DDPM and DDIM as a library (math and models; no DVC or MLflow inside).

Subpackages by job, each importing only those listed before it (tests/test_house.py enforces it):

- ``core``: the diffusion math and the network (torch and numpy only; imports nothing else of ddpm)
- ``config``: the params.yaml schema (imports only the torch-free parts of ``core``)
- ``storage``: file formats: atomic writes, checksums, model files
- ``data``: dataset sources, WebDataset shards and their readers
- ``factory``: params → the diffusion process and the network; a trained model loaded for inference
- ``sample_store``: the sample stage's images in resumable chunk files
- ``training``: the training loop, one optimisation step, checkpoints, telemetry
- ``evaluation``: FID and friends, likelihood and rate–distortion, figures, the papers' tables, the report
- ``runner``: what every stage runs in: the stage runner and its paths, MLflow tracking and its offline spool
"""
