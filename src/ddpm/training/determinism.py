"""Bit-reproducible training on a GPU (``train.deterministic``): PyTorch's deterministic algorithms, cuDNN without
autotuning, and cuBLAS with a fixed workspace. On a CPU training is reproducible without it; on a GPU some
backward kernels (convolutions' weight gradients, scatter-adds) otherwise sum in a run-dependent order, so a resumed
run matches an uninterrupted one only to float rounding. Costs speed; an operation without a deterministic version
then raises, naming itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for reproducible results (CUDA ≥ 10.2)


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Inside the block, deterministic algorithms only (when ``enabled``); the previous settings come back after."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # read when cuBLAS first starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
