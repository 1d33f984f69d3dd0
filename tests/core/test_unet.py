import pytest
import torch

from ddpm.core.unet import UNet, UNetConfig, count_parameters


def test_cifar10_config_has_ddpm_parameter_count():
    assert count_parameters(UNet(UNetConfig())) == 35_746_307  # DDPM App. B: 35.7M


def test_lsun_256_config_has_114m_parameters():
    cfg = UNetConfig(ch_mult=(1, 1, 2, 2, 4, 4), dropout=0.0, resolution=256)
    assert round(count_parameters(UNet(cfg)) / 1e6) == 114


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"learn_sigma": True},
        {"num_heads": 2, "scale_shift_norm": True},
        {"resblock_updown": True, "num_res_blocks": 2},
    ],
)
def test_output_shapes(options):
    cfg = UNetConfig(in_channels=3, ch=32, ch_mult=(1, 2), attn_resolutions=(8,), resolution=16, **options)
    model = UNet(cfg)
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([0, 999]))
    assert out.shape == (2, 6 if options.get("learn_sigma") else 3, 16, 16)


def test_zero_initialised_output_predicts_zero_at_start():
    model = UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1, 2), attn_resolutions=(), resolution=8))
    assert torch.count_nonzero(model(torch.randn(2, 1, 8, 8), torch.tensor([3, 4]))) == 0


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"resolution": 30}, "model.ch_mult: 4 levels halve the resolution 3 times"),
        ({"ch": 40}, "model.ch: every level width"),
        ({"dropout": 1.0}, "model.dropout: must be in"),
        ({"ch_mult": ()}, "model.ch_mult: must be a non-empty list"),
    ],
)
def test_bad_configs(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        UNetConfig(**kwargs)


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), resolution=8, dropout=0.2))
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 5, 9])

    def grads(checkpointing):
        model.gradient_checkpointing = checkpointing
        model.zero_grad()
        torch.manual_seed(1)  # same dropout masks; the recomputation must replay them
        model(x, t).square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    for plain, recomputed in zip(grads(False), grads(True), strict=True):
        torch.testing.assert_close(recomputed, plain)


def test_the_time_embedding_stays_in_float32_under_bf16_autocast():
    """As iDDPM's mixed precision keeps it: under autocast only the rest of the network runs in bfloat16."""
    from helpers.networks import small_unet

    model = small_unet()
    seen = []
    model.temb.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 1, 8, 8), torch.tensor([3, 40]))
    assert seen == [torch.float32] and out.dtype == torch.bfloat16
