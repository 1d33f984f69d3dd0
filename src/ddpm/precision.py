"""What float32 means on a GPU. PyTorch runs cuDNN convolutions in TF32 by default (a 10-bit mantissa), so an
"fp32" network would not be IEEE float32; every compute stage sets IEEE here, through PyTorch's precision API
(``fp32_precision``), and TF32 only where a param asks for it by name. The legacy ``allow_tf32`` flags are set to
agree first: PyTorch raises when code reads them (Inductor's max-autotune, diffusers, a user's script) after the new
API alone was used. A no-op for CPU arithmetic."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

IEEE, TF32 = "ieee", "tf32"


def _settings():
    return (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)


def _apply(modes: list[str]) -> None:
    """Set matmul, cuDNN conv and cuDNN RNN precision (``_settings`` order), the legacy flags first to agree."""
    matmul, conv, _ = modes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy flags' deprecation notice: set only so that reading them works
        torch.backends.cuda.matmul.allow_tf32 = matmul == TF32
        torch.backends.cudnn.allow_tf32 = conv == TF32
    for setting, mode in zip(_settings(), modes, strict=True):
        setting.fp32_precision = mode


def set_fp32_precision(mode: str) -> None:
    """Matmuls and convolutions in float32 as ``mode`` says: ``ieee`` (true float32) or ``tf32``."""
    if mode not in (IEEE, TF32):
        raise ValueError(f"fp32 precision {mode!r} is not {IEEE!r} or {TF32!r}")
    _apply([mode] * len(_settings()))


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
        _apply(saved)
