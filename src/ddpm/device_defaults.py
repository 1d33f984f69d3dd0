"""What ``auto`` means on each device: the fast path on a CUDA GPU, IEEE float32 without compilation elsewhere.

On CUDA, training runs under bf16 autocast and ``torch.compile``; sampling (and the FID cells) under bf16 autocast,
compiled with CUDA graphs; the bound (NLL, bits/dim) in TF32, compiled. On a CPU every ``auto`` is the exact path:
IEEE float32, not compiled (bf16 on a CPU is emulated or slower, and compiling costs minutes there). Every setting
stays one ``-S`` away (``train.mixed_precision=no`` …). Compute stages resolve ``auto`` before their work, run with
the resolved params, and record what it became (``resolve_auto``)."""

from __future__ import annotations

from typing import Any

from ddpm.config import Params

AUTO = "auto"
ON_CUDA: dict[str, Any] = {
    "train.mixed_precision": "bf16",
    "train.compile": True,
    "sample.precision": "bf16",
    "sample.compile": True,
    "evaluate.nll_precision": "tf32",
    "evaluate.compile": True,
}
ELSEWHERE: dict[str, Any] = {
    "train.mixed_precision": "no",
    "train.compile": False,
    "sample.precision": "fp32",
    "sample.compile": False,
    "evaluate.nll_precision": "fp32",
    "evaluate.compile": False,
}


def concrete(key: str, value: Any, device_type: str) -> Any:
    """``value`` of the setting ``key`` (one of ``ON_CUDA``'s keys), ``auto`` replaced as ``device_type`` says."""
    if value != AUTO:
        return value
    return (ON_CUDA if device_type == "cuda" else ELSEWHERE)[key]


def resolve_auto(params: Params, device_type: str) -> tuple[Params, dict[str, str]]:
    """``params`` with every ``auto`` replaced as on ``device_type`` ("cuda", "cpu", …), and what each became
    (key → value as text, for the stage's metrics and MLflow run); ``params`` itself when none is ``auto``."""
    data = params.model_dump(mode="json")
    resolved: dict[str, str] = {}
    for key in ON_CUDA:
        section, name = key.split(".")
        if data[section][name] == AUTO:
            data[section][name] = concrete(key, AUTO, device_type)
            resolved[key] = str(data[section][name]).lower()
    return (Params.model_validate(data) if resolved else params), resolved
