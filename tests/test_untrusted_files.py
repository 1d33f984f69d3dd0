"""Untrusted files: nothing is unpickled. A crafted pickle in place of weights or a checkpoint is refused with a
clear error, and its payload never runs."""

import re
from pathlib import Path

import pytest
import torch

from ddpm.core.unet import UNet, UNetConfig
from ddpm.evaluation import fid
from ddpm.storage.model_files import load_model, save_model
from ddpm.training import checkpoints as train_state

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this creates a marker file: proof that code in the file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def crafted(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": Payload(marker)}, path)  # the layout of a classic torch checkpoint
    return path


def small():
    return UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1,), attn_resolutions=(), resolution=8))


def test_a_pickled_model_file_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = crafted(tmp_path / "ema.safetensors", marker)
    with pytest.raises(ValueError, match=r"model: .*ema.safetensors is not a valid safetensors file"):
        load_model(path, "cpu")
    assert not marker.exists()


def test_a_pickled_checkpoint_is_refused_and_its_code_never_runs(tmp_path):
    model = small()
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ck = train_state.save_checkpoint(tmp_path / "ck", 5, "fp", model, model, opt, sched, {}, [], keep=2)
    marker = tmp_path / "pwned"
    crafted(ck / "optimizer.safetensors", marker)
    with pytest.raises(ValueError, match=r"checkpoint: .*optimizer.safetensors is not a valid safetensors file"):
        train_state.load_checkpoint(ck, model, model, opt, sched)
    assert not marker.exists()


def test_model_files_hold_no_pickle(tmp_path):
    save_model(small(), tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").read_bytes().startswith(b"PK")  # not a torch.save zip
    assert not (tmp_path / "m.safetensors").read_bytes()[:2] == b"\x80\x04"  # not a raw pickle


def test_no_unsafe_loads_in_the_code():
    """torch.load only with weights_only=True; numpy never with allow_pickle=True; no pickle.load."""
    for path in list((ROOT / "src").rglob("*.py")) + list((ROOT / "pipeline").rglob("*.py")):
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert "allow_pickle=True" not in text, path
        assert "pickle.load(" not in text and "pickle.loads(" not in text, path


def test_tampered_inception_files_are_refused_before_loading(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    fake = crafted(tmp_path / "default_1.pt", marker)
    monkeypatch.setattr(fid, "weights_path", lambda: fake)
    fid.verified_weights_path.cache_clear()
    try:
        with pytest.raises(ValueError, match="FID weights: .*default_1.pt has sha1 .* expected"):
            fid.verified_weights_path()
    finally:
        fid.verified_weights_path.cache_clear()
    from ddpm.evaluation import isc_weights

    isc = crafted(tmp_path / isc_weights.FILE, marker)
    with pytest.raises(ValueError, match="evaluate.isc_weights: .* refusing to unpickle it"):
        isc_weights.isc_weights_path(str(isc))
    assert not marker.exists()


def test_the_same_weights_give_the_same_model_file_bytes(tmp_path):
    """DVC compares files by hash: a header whose key order varied between processes would make every retrain
    look like a new model. Each save runs in a fresh process (hash-map seeds differ per process)."""
    import subprocess
    import sys

    code = (
        "import sys, torch; from ddpm.core.unet import UNet, UNetConfig; "
        "from ddpm.storage.model_files import save_model; "
        "torch.manual_seed(0); m = UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1,), attn_resolutions=(), "
        "resolution=8)); save_model(m, sys.argv[1], ema_decay='0.99', steps='7')"
    )
    files = [tmp_path / f"m{i}.safetensors" for i in range(4)]
    for f in files:
        subprocess.run([sys.executable, "-c", code, str(f)], check=True, timeout=120)
    assert len({f.read_bytes() for f in files}) == 1
    assert load_model(files[0], "cpu").config.ch == 32
