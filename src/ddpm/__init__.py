"""ddpm-pipeline: DDPM, Improved DDPM and DDIM as a library (math and models; no DVC or MLflow inside).

Subpackages by job, each importing only those listed before it (tests/test_layering.py enforces it):

- ``core``: the diffusion math and the network (torch and numpy only; imports nothing else of ddpm)
- ``config``: the params.yaml schema (imports only the torch-free parts of ``core``)
- ``storage``: file formats: atomic writes, checksums, model files
- ``data``: dataset sources, WebDataset shards and their readers
- ``factory``: params → the diffusion process and the network; a trained model loaded for inference
- ``sample_store``: the sample stage's images in resumable chunk files
- ``training``: the training loop, one optimisation step, checkpoints, telemetry
- ``evaluation``: FID and friends, likelihood and rate–distortion, figures, the papers' tables, the report
- ``processes``: where and among which processes a stage runs (the project root, the DVC process)
- ``tracking``: MLflow: stage and pipeline runs, the store, the offline spool, the registry, the report's queries
- ``stage``: what every stage runs in: params first, one-line errors, paths, placement, the workspace claim
- ``cli``: the ``ddpm`` command (``compare``, ``table``, ``replay``, ``isc-weights``)
"""
