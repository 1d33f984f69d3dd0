"""What "fp32" means on a GPU: IEEE float32 wherever the params say fp32 or no, TF32 only where they name it, set
through PyTorch's one precision API (the flags are read here; TF32 arithmetic itself needs an Ampere+ GPU)."""

import pytest
import torch
from helpers.networks import small_unet
from helpers.params import make_params

from ddpm.core.options import InferencePrecision
from ddpm.evaluation.fid import full_float32
from ddpm.factory import inference_network
from ddpm.precision import fp32_precision, ieee_float32, set_fp32_precision
from ddpm.training.loop import make_accelerator


@pytest.fixture(autouse=True)
def restore():
    yield
    set_fp32_precision("ieee")


def test_the_setting_covers_matmuls_convolutions_and_rnns_and_a_block_restores_it():
    set_fp32_precision("tf32")
    assert fp32_precision() == "tf32" and torch.backends.cudnn.conv.fp32_precision == "tf32"
    with ieee_float32():
        assert fp32_precision() == "ieee"
    assert fp32_precision() == "tf32"
    with pytest.raises(ValueError, match="fp32 precision 'tf16' is not 'ieee' or 'tf32'"):
        set_fp32_precision("tf16")


@pytest.mark.parametrize("mode", ["ieee", "tf32"])
def test_the_legacy_flags_read_as_the_setting_after_it(mode):
    """Code that still reads torch.backends.*.allow_tf32 (Inductor's max-autotune, diffusers) finds the setting
    there instead of PyTorch's mixed-API RuntimeError, also after a block restored it."""
    set_fp32_precision("tf32" if mode == "ieee" else "ieee")
    set_fp32_precision(mode)
    with ieee_float32():
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32 == torch.backends.cuda.matmul.allow_tf32 == (mode == "tf32")
    assert torch.get_float32_matmul_precision() == ("high" if mode == "tf32" else "highest")


def test_inception_features_run_in_ieee_float32_after_the_new_api_was_used():
    """The legacy allow_tf32 flags raise once fp32_precision is used; the FID path uses the new API only."""
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    with full_float32():
        assert fp32_precision() == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"


@pytest.mark.parametrize("precision,mode", [("fp32", "ieee"), ("tf32", "tf32"), ("bf16", "ieee")])
def test_the_sampling_network_sets_float32_as_its_precision_names_it(precision, mode):
    set_fp32_precision("tf32" if mode == "ieee" else "ieee")  # whatever was set before
    inference_network(small_unet(), torch.device("cpu"), InferencePrecision(precision), compile=False)
    assert fp32_precision() == mode


@pytest.mark.parametrize(
    "mixed,mode,accelerate", [("no", "ieee", "no"), ("tf32", "tf32", "no"), ("bf16", "ieee", "bf16")]
)
def test_training_precision_no_is_ieee_and_tf32_is_named(mixed, mode, accelerate):
    from accelerate.state import AcceleratorState

    set_fp32_precision("tf32" if mode == "ieee" else "ieee")
    try:
        accelerator = make_accelerator(make_params({"train": {"mixed_precision": mixed}}, profile="tiny"))
        assert fp32_precision() == mode and accelerator.mixed_precision == accelerate
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
