"""Released-checkpoint layouts: parity with the reference implementations' outputs, strict key and shape checks on
the full-size layouts, safe loading, and the conventions each codebase trained with."""

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.params import make_params, merged
from helpers.released import export_layout
from safetensors.torch import load_file

from ddpm.core.unet import UNet, UNetConfig
from ddpm.factory import unet_config
from ddpm.importers import CheckpointError, Layout, import_checkpoint
from ddpm.importers.layouts import convert

GOLDEN = Path(__file__).parent / "golden"
SMALL = json.loads((GOLDEN / "fixtures.json").read_text())["small"]

DDPM_SMALL = UNetConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8,), resolution=16, dropout=0.0)
IDDPM_SMALL = UNetConfig(
    ch=32,
    ch_mult=(1, 2, 2),
    num_res_blocks=2,
    attn_resolutions=(8, 4),
    resolution=16,
    dropout=0.0,
    num_heads=4,
    scale_shift_norm=True,
    learn_sigma=True,
    norm_eps=1e-5,
    downsample_padding="symmetric",
    time_embedding="iddpm",
    qkv_layout="heads",
    time_scale=1000 / 4000,
)


def reference(name):
    io = np.load(GOLDEN / f"{name}_io.npz")
    return torch.from_numpy(io["x"]), torch.from_numpy(io["t_index"]), torch.from_numpy(io["y"])


def relative_error(y, ref):
    """Largest deviation relative to the output's scale (elementwise ratios are meaningless near zero)."""
    return float((y - ref).abs().max() / ref.abs().max())


def run(model, x, t):
    with torch.no_grad():
        return model(x, t)


def test_the_small_settings_are_the_ones_the_references_used():
    eg, idd = SMALL["eg_small"], SMALL["id_small"]
    assert (eg["ch"], tuple(eg["ch_mult"]), tuple(eg["attn_resolutions"]), eg["T"]) == (32, (1, 2, 2), (8,), 1000)
    assert (idd["model_channels"], tuple(idd["attention_resolutions"]), idd["num_heads"], idd["T"]) == (
        32,
        (8, 4),
        4,
        4000,
    )
    assert sum(p.numel() for p in UNet(DDPM_SMALL).parameters()) == eg["params"]
    assert sum(p.numel() for p in UNet(IDDPM_SMALL).parameters()) == idd["params"]


def test_ddpm_port_checkpoint_reproduces_the_reference_and_takes_the_ema_copy(tmp_path):
    ema = load_file(GOLDEN / "eg_small.safetensors")
    raw = {f"module.{k}": v + 1 for k, v in ema.items()}  # DataParallel names; not the weights to take
    path = tmp_path / "ckpt.pth"
    torch.save([raw, {"state": {}}, 3, 1000, {f"module.{k}": v for k, v in ema.items()}], path)
    imported = import_checkpoint(path, DDPM_SMALL)
    assert imported.layout is Layout.DDPM and imported.weights.startswith("the EMA weights (entry 5 of 5)")
    x, t, ref = reference("eg_small")
    assert relative_error(run(imported.model, x, t), ref) < 1e-5


def test_improved_diffusion_checkpoint_reproduces_the_reference_with_rescaled_timesteps(tmp_path):
    path = tmp_path / "ema_0.9999_500000.pt"
    torch.save(load_file(GOLDEN / "id_small.safetensors"), path)
    imported = import_checkpoint(path, IDDPM_SMALL)
    assert imported.layout is Layout.IDDPM and imported.weights == "EMA weights by the file name"
    x, t, ref = reference("id_small")
    assert relative_error(run(imported.model, x, t), ref) < 1e-5  # the network sees t · 1000 / 4000


@pytest.mark.parametrize(
    ("name", "cfg", "change"),
    [
        ("eg_small", DDPM_SMALL, {"downsample_padding": "symmetric"}),
        ("eg_small", DDPM_SMALL, {"time_embedding": "iddpm"}),
        ("id_small", IDDPM_SMALL, {"downsample_padding": "same"}),
        ("id_small", IDDPM_SMALL, {"time_embedding": "ddpm"}),
        ("id_small", IDDPM_SMALL, {"qkv_layout": "qkv"}),
        ("id_small", IDDPM_SMALL, {"time_scale": 1.0}),
    ],
)
def test_each_convention_changes_the_output_so_the_parity_tests_pin_it(name, cfg, change):
    layout = Layout.DDPM if name == "eg_small" else Layout.IDDPM
    state = convert(load_file(GOLDEN / f"{name}.safetensors"), layout, cfg, name)
    model = UNet(dataclasses.replace(cfg, **change)).eval()
    model.load_state_dict(state)
    x, t, ref = reference(name)
    assert relative_error(run(model, x, t), ref) > 1e-2


def test_groupnorm_epsilon_is_each_codebases():
    assert {m.eps for m in UNet(DDPM_SMALL).modules() if isinstance(m, torch.nn.GroupNorm)} == {1e-6}
    assert {m.eps for m in UNet(IDDPM_SMALL).modules() if isinstance(m, torch.nn.GroupNorm)} == {1e-5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"downsample_padding": "symmetric"},
            "model.downsample_padding: .* trained with downsample_padding = 'same', the profile builds 'symmetric'",
        ),
        ({"num_heads": 4}, "model.num_heads: .* trained with num_heads = 1, the profile builds 4"),
    ],
)
def test_a_profile_with_other_conventions_is_refused_naming_the_key(change, message, tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save(load_file(GOLDEN / "eg_small.safetensors"), path)
    with pytest.raises(CheckpointError, match=f"^{message}"):
        import_checkpoint(path, dataclasses.replace(DDPM_SMALL, **change))


FULL = [
    ("eg_ddpm_cifar10", "cifar10_ddpm"),
    ("eg_ddpm_256", "released_ddpm_church"),
    ("id_cifar10", "released_iddpm_cifar10_hybrid"),
    ("id_cifar10", "iddpm_cifar10"),
    ("id_lsun256", "released_iddpm_bedroom"),
]


@pytest.mark.parametrize(("fixture", "profile"), FULL)
def test_full_size_released_layouts_import_strictly_into_their_profiles(fixture, profile):
    spec = json.loads((GOLDEN / "fixtures.json").read_text())["full"][fixture]
    state = {k: torch.empty(shape, device="meta") for k, shape in spec["shapes"].items()}
    params = make_params(profile=profile)
    cfg = unet_config(params, 3)
    layout = Layout.DDPM if fixture.startswith("eg") else Layout.IDDPM
    converted = convert(state, layout, cfg, fixture)
    assert sum(v.numel() for v in converted.values()) == spec["params"]


def test_missing_and_unknown_keys_are_named(tmp_path):
    state = load_file(GOLDEN / "eg_small.safetensors")
    state.pop("mid.attn_1.q.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "model.ckpt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys: mid.attn_1.q.weight; 1 unknown keys: extra.weight"):
        import_checkpoint(path, DDPM_SMALL)


def test_a_wrong_architecture_names_the_shape(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save(load_file(GOLDEN / "eg_small.safetensors"), path)
    with pytest.raises(
        CheckpointError,
        match=r"temb.dense.0.weight has shape \[128, 32\], the profile's network "
        r"wants \[256, 64\] for temb.0.weight",
    ):
        import_checkpoint(path, dataclasses.replace(DDPM_SMALL, ch=64))


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickles_with_code_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"conv_in.weight": Payload()}))
    with pytest.raises(CheckpointError, match=r"evil.ckpt: refused: not a file of plain tensors"):
        import_checkpoint(path, DDPM_SMALL)
    assert "pickled code ran" not in capsys.readouterr().out


def test_unknown_layout_asks_for_the_format(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"cannot tell the layout .* set model.import_from.format"):
        import_checkpoint(path, DDPM_SMALL)


@pytest.mark.parametrize("layout", list(Layout))
def test_export_then_import_is_the_identity(layout, tmp_path):
    torch.manual_seed(0)
    cfg = DDPM_SMALL
    if layout is Layout.IDDPM:
        cfg = dataclasses.replace(IDDPM_SMALL, scale_shift_norm=False)
    model = UNet(cfg)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    restored = UNet(cfg)
    restored.load_state_dict(convert(export_layout(model, layout), layout, cfg, "exported"))
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([3, 700])
    torch.testing.assert_close(run(restored.eval(), x, t), run(model.eval(), x, t), rtol=0, atol=0)


DIFFUSERS_CONFIGS = {  # the google/ddpm-cifar10-32 and google/ddpm-church-256 conversions' UNet2DModel configs
    "cifar10_ddpm": {
        "sample_size": 32,
        "block_out_channels": (128, 256, 256, 256),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    },
    "released_ddpm_church": {
        "sample_size": 256,
        "block_out_channels": (128, 128, 256, 256, 512, 512),
        "down_block_types": ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    },
}


@pytest.mark.parametrize("profile", ["cifar10_ddpm", pytest.param("released_ddpm_church", marks=pytest.mark.slow)])
def test_diffusers_ddpm_conversions_are_reproduced(profile, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    reference_model = diffusers.UNet2DModel(
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        norm_eps=1e-6,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        act_fn="silu",
        attention_head_dim=None,
        norm_num_groups=32,
        **DIFFUSERS_CONFIGS[profile],
    ).eval()
    reference_model.save_pretrained(tmp_path / "unet")
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(
            {
                "num_train_timesteps": 1000,
                "beta_schedule": "linear",
                "beta_start": 0.0001,
                "beta_end": 0.02,
                "variance_type": "fixed_small",
            }
        )
    )
    params = make_params(profile=profile)
    imported = import_checkpoint(tmp_path, unet_config(params, 3))
    assert imported.layout is Layout.DIFFUSERS and imported.scheduler["num_train_timesteps"] == 1000
    size = params.data.resolution
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 999] if size == 32 else [437, 999])
    with torch.no_grad():
        ref = reference_model(x, t).sample
    assert relative_error(run(imported.model, x, t), ref) < 1e-5


def test_diffusers_heads_follow_attention_head_dim_when_the_config_leaves_it_out(tmp_path):
    """diffusers gives each attention block width / attention_head_dim heads, 8 channels a head when config.json has
    no attention_head_dim: the import builds the same heads, and a profile with other heads is named."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    reference = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_eps=1e-6,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
    ).eval()
    for name, p in reference.named_parameters():  # q and k large enough that the heads matter
        p.data.normal_(0, 0.5 if "to_q" in name or "to_k" in name else 0.05)
    reference.save_pretrained(tmp_path / "unet")
    config = json.loads((tmp_path / "unet" / "config.json").read_text())
    assert config.pop("attention_head_dim") == 8  # diffusers' default, as an older config.json would leave out
    (tmp_path / "unet" / "config.json").write_text(json.dumps(config))
    base = {
        "dataset": "digits",
        "data": {"resolution": 8},
        "model": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4], "norm_eps": 1e-6},
    }
    imported = import_checkpoint(tmp_path, unet_config(make_params(merged(base, {"model": {"num_heads": 8}})), 1))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([3, 900])
    one_head = UNet(dataclasses.replace(imported.model.config, num_heads=1))
    one_head.load_state_dict(imported.model.state_dict())
    with torch.no_grad():
        expected = reference(x, t).sample
        assert relative_error(run(imported.model, x, t), expected) < 1e-5
        assert relative_error(run(one_head.eval(), x, t), expected) > 1e-4  # what importing it as one head gave
    with pytest.raises(
        CheckpointError,
        match=r"^model.num_heads: .* was trained with num_heads = 8, the profile "
        r"builds 1",
    ):
        import_checkpoint(tmp_path, unet_config(make_params(base), 1))


@pytest.mark.parametrize(
    "key,value",
    [
        ("mid_block_scale_factor", 1.4142),
        ("norm_num_groups", 16),
        ("act_fn", "gelu"),
        ("attn_norm_num_groups", 8),
        ("add_attention", False),
        ("downsample_type", "resnet"),
        ("upsample_type", "resnet"),
        ("class_embed_type", "timestep"),
        ("num_class_embeds", 10),
        ("time_embedding_dim", 96),
        ("center_input_sample", True),
        ("resnet_time_scale_shift", "scale_shift"),
        ("time_embedding_type", "fourier"),
        ("mid_block_type", None),
        ("down_block_types", ["DownBlock2D", "SkipDownBlock2D"]),
        ("attention_head_dim", 24),
    ],
)
def test_diffusers_config_values_the_unet_does_not_reproduce_are_named(key, value):
    from ddpm.importers.layouts import diffusers_conventions

    config = {
        "block_out_channels": [32, 64],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "flip_sin_to_cos": False,
        "freq_shift": 1,
        "downsample_padding": 0,
        "attention_head_dim": None,
    }
    assert diffusers_conventions(config, "unet")["num_heads"] == 1
    with pytest.raises(CheckpointError, match=rf"^unet: config.json: {key} .* (is not reproduced|does not divide)"):
        diffusers_conventions(config | {key: value}, "unet")
