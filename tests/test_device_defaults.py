"""``auto`` settings: the fast path on CUDA, the exact one elsewhere, and what a stage records of them."""

import pytest
from helpers.params import make_params

from ddpm.config import Precision
from ddpm.core.options import InferencePrecision
from ddpm.device_defaults import ELSEWHERE, ON_CUDA, resolve_auto


def test_auto_is_the_fast_path_on_cuda_and_ieee_float32_uncompiled_elsewhere():
    params = make_params()
    assert params.train.mixed_precision is Precision.AUTO and params.sample.compile == "auto"  # the defaults
    on_gpu, resolved = resolve_auto(params, "cuda")
    assert (on_gpu.train.mixed_precision, on_gpu.train.compile) == (Precision.BF16, True)
    assert (on_gpu.sample.precision, on_gpu.sample.compile) == (InferencePrecision.BF16, True)
    assert (on_gpu.evaluate.nll_precision, on_gpu.evaluate.compile) == (InferencePrecision.TF32, True)
    assert resolved == {key: str(value).lower() for key, value in ON_CUDA.items()}
    on_cpu, resolved = resolve_auto(params, "cpu")
    assert (on_cpu.train.mixed_precision, on_cpu.train.compile) == (Precision.NO, False)
    assert (on_cpu.sample.precision, on_cpu.evaluate.nll_precision) == (InferencePrecision.FP32,) * 2
    assert resolved["sample.compile"] == "false" and set(resolved) == set(ELSEWHERE)


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_a_named_setting_is_kept_and_nothing_else_changes(device):
    params = make_params({"train": {"mixed_precision": "no", "compile": False}, "sample": {"precision": "tf32"}})
    resolved_params, resolved = resolve_auto(params, device)
    assert "train.mixed_precision" not in resolved and "sample.precision" not in resolved
    assert resolved_params.train.mixed_precision is Precision.NO and resolved_params.sample.precision == "tf32"
    rest = {k: v for k, v in resolved_params.model_dump().items() if k not in ("train", "sample", "evaluate")}
    assert rest == {k: v for k, v in params.model_dump().items() if k not in ("train", "sample", "evaluate")}
    explicit = make_params(
        {
            "train": {"mixed_precision": "no", "compile": False},
            "sample": {"precision": "fp32", "compile": False},
            "evaluate": {"nll_precision": "fp32", "compile": False},
        }
    )
    assert resolve_auto(explicit, device) == (explicit, {})
