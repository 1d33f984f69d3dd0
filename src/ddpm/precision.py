"""What float32 means on a GPU. PyTorch runs cuDNN convolutions in TF32 by default (a 10-bit mantissa), so an
"fp32" network would not be IEEE float32; every compute stage sets IEEE here, through PyTorch's one precision API
(``fp32_precision``; the legacy ``allow_tf32`` flags raise once the new API is used), and TF32 only where a param
asks for it by name. A no-op for CPU arithmetic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

IEEE, TF32 = "ieee", "tf32"


def _settings():
    return (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)


def set_fp32_precision(mode: str) -> None:
    """Matmuls and convolutions in float32 as ``mode`` says: ``ieee`` (true float32) or ``tf32``."""
    if mode not in (IEEE, TF32):
        raise ValueError(f"fp32 precision {mode!r} is not {IEEE!r} or {TF32!r}")
    for setting in _settings():
        setting.fp32_precision = mode


def fp32_precision() -> str:
    """``ieee``, ``tf32``, or ``mixed`` when matmuls and convolutions differ."""
    modes = {setting.fp32_precision for setting in _settings()}
    return modes.pop() if len(modes) == 1 else "mixed"


@contextmanager
def ieee_float32() -> Iterator[None]:
    """IEEE float32 inside the block, whatever was set outside it (restored after)."""
    saved = [setting.fp32_precision for setting in _settings()]
    set_fp32_precision(IEEE)
    try:
        yield
    finally:
        for setting, mode in zip(_settings(), saved, strict=True):
            setting.fp32_precision = mode
