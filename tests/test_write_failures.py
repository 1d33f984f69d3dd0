"""A write that fails midway (a full disk, simulated) leaves the previous files intact and fails clearly."""

import errno

import numpy as np
import pytest
import torch
from helpers import small_unet

from ddpm import sample_store
from ddpm.data import shards
from ddpm.training import checkpoints as train_state

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def full_disk_after(n_ok: int, real):
    """A writer that succeeds ``n_ok`` times, then writes a few bytes and fails as a full disk does."""
    calls = {"n": 0}

    def write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            path = args[1] if len(args) > 1 else kwargs.get("filename") or args[0]
            with open(path, "wb") as f:
                f.write(b"partial")
            raise ENOSPC
        return real(*args, **kwargs)

    return write


def test_checkpoint_write_failure_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = small_unet(ch_mult=(1,), attn_resolutions=(), scale=None)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    first = train_state.save_checkpoint(tmp_path, 10, "fp", model, model, opt, sched, {}, [], keep=2)
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    monkeypatch.setattr(train_state, "save_file", full_disk_after(1, train_state.save_file))
    with pytest.raises(OSError, match="No space left on device"):
        train_state.save_checkpoint(tmp_path, 20, "fp", model, model, opt, sched, {}, [], keep=2)
    assert [c.step for c in train_state.list_checkpoints(tmp_path)] == [10]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000010"]  # no half-written folder
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


def test_shard_write_failure_keeps_the_previous_shards(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = [(f"k{i}", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 0) for i in range(30)]
    out = tmp_path / "shards"
    shards.write_dataset({"train": iter(images)}, out, 10, {"v": 1})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = shards.encode_png

    def encode_then_fail(img):
        calls["n"] += 1
        if calls["n"] > 15:  # midway through the second shard
            raise ENOSPC
        return real(img)

    monkeypatch.setattr(shards, "encode_png", encode_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        shards.write_dataset({"train": iter(images)}, out, 10, {"v": 2})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # the temporary folder is gone


def test_sample_chunk_write_failure_keeps_finished_chunks_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from helpers import sampling_setup

    from ddpm.storage import files

    inference, cfg = sampling_setup("ddim", 0.0)
    sample_store.clear_stale(tmp_path, "fp")
    monkeypatch.setattr(files.np, "savez", full_disk_after(1, np.savez))
    with pytest.raises(OSError, match="No space left on device"):
        sample_store.sample_chunks(inference, cfg, 7, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk-000000.npz", "fingerprint"]
    monkeypatch.undo()
    written = sample_store.sample_chunks(inference, cfg, 7, tmp_path)  # the rerun redoes only the rest
    assert written == ["chunk-000001.npz", "chunk-000002.npz"]


def test_stage_reports_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    import yaml
    from helpers import compose_raw

    from ddpm.runner.stage import stage_main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_raw()))

    def body(params, paths, run):
        raise OSError(errno.ENOSPC, "No space left on device", "checkpoints/step-000000020/model.safetensors")

    with pytest.raises(SystemExit) as exit_:
        stage_main("train", body, params_path=str(tmp_path / "params.yaml"))
    assert str(exit_.value) == ("error: train: [Errno 28] No space left on device: "
                                "'checkpoints/step-000000020/model.safetensors'")
