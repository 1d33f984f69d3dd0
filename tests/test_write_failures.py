"""A write that fails midway (a full disk or a read-only file system, simulated) leaves the previous files intact
and fails in one line naming the file: checkpoints, model files, sample chunks, shards and FID references, with
safetensors' own error as well as the operating system's."""

import errno

import numpy as np
import pytest
import torch
from helpers.networks import small_unet
from safetensors import SafetensorError

from ddpm import sample_store
from ddpm.data import shards
from ddpm.storage import model_files
from ddpm.storage.files import WriteError
from ddpm.training import checkpoints as train_state

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
FULL = "No space left on device"


def full_disk_after(n_ok: int, real, error: BaseException = ENOSPC):
    """A writer that succeeds ``n_ok`` times, then writes a few bytes and fails as a full disk does."""
    calls = {"n": 0}

    def write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            path = args[1] if len(args) > 1 else kwargs.get("filename") or args[0]
            with open(path, "wb") as f:
                f.write(b"partial")
            raise error
        return real(*args, **kwargs)

    return write


SAFETENSORS_FULL = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_checkpoint_write_failure_keeps_the_previous_checkpoint_and_names_it(tmp_path, monkeypatch):
    model = small_unet(ch_mult=(1,), attn_resolutions=(), scale=None)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    first = train_state.save_checkpoint(tmp_path, 10, "fp", model, model, opt, sched, {}, [], keep=2)
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    monkeypatch.setattr(train_state, "save_file", full_disk_after(1, train_state.save_file, SAFETENSORS_FULL))
    with pytest.raises(WriteError) as err:
        train_state.save_checkpoint(tmp_path, 20, "fp", model, model, opt, sched, {}, [], keep=2)
    assert str(err.value) == f"cannot write {tmp_path / 'step-000000020'}: {FULL}" and err.value.errno == errno.ENOSPC
    assert [c.step for c in train_state.list_checkpoints(tmp_path)] == [10]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000010"]  # no half-written folder
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


def test_model_file_on_a_read_only_file_system_is_named(tmp_path, monkeypatch):
    model = small_unet(ch_mult=(1,), attn_resolutions=(), scale=None)
    path = tmp_path / "models" / "ema.safetensors"
    model_files.save_model(model, path)
    before = path.read_bytes()
    read_only = SafetensorError("Error while serializing: I/O error: Read-only file system (os error 30)")
    monkeypatch.setattr(model_files, "save_file", full_disk_after(0, model_files.save_file, read_only))
    with pytest.raises(WriteError, match=rf"^cannot write {path}: Read-only file system$"):
        model_files.save_model(model, path)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["ema.safetensors"]


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
    with pytest.raises(WriteError, match=rf"^cannot write {out}: {FULL}$"):
        shards.write_dataset({"train": iter(images)}, out, 10, {"v": 2})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # the temporary folder is gone


def test_a_read_error_inside_a_write_keeps_its_own_message(tmp_path):
    """An unreadable source image met while the shards are written is no write failure of the shards."""

    def unreadable():
        raise PermissionError(errno.EACCES, "Permission denied", "/data/cifar/img-7.png")
        yield

    with pytest.raises(PermissionError) as err:
        shards.write_dataset({"train": unreadable()}, tmp_path / "shards", 10, {})
    assert not isinstance(err.value, WriteError) and err.value.filename == "/data/cifar/img-7.png"


def test_sample_chunk_write_failure_keeps_finished_chunks_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from helpers.networks import sampling_setup

    from ddpm.storage import files

    inference, cfg = sampling_setup("ddim", 0.0)
    sample_store.clear_stale(tmp_path, "fp")
    monkeypatch.setattr(files.np, "savez", full_disk_after(1, np.savez))
    with pytest.raises(WriteError, match=rf"^cannot write {tmp_path / 'chunk-000001.npz'}: {FULL}$"):
        sample_store.sample_chunks(inference, cfg, 7, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk-000000.npz", "fingerprint"]
    monkeypatch.undo()
    written = sample_store.sample_chunks(inference, cfg, 7, tmp_path)  # the rerun redoes only the rest
    assert written == ["chunk-000001.npz", "chunk-000002.npz"]


def test_fid_reference_write_failure_is_named(tmp_path, monkeypatch):
    from ddpm.evaluation import fid
    from ddpm.storage import files

    path = tmp_path / "fid_ref" / "digits-8-train.npz"
    monkeypatch.setattr(files.np, "savez", full_disk_after(0, np.savez))
    with pytest.raises(WriteError, match=rf"^cannot write {path}: {FULL}$"):
        fid.save_statistics(path, {"mu": np.zeros(2), "sigma": np.eye(2)})
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_stage_reports_a_full_disk_in_one_line(tmp_path, monkeypatch):
    import yaml
    from helpers.params import compose_raw

    from ddpm.stage.harness import stage_main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_raw()))
    model = small_unet(ch_mult=(1,), attn_resolutions=(), scale=None)
    monkeypatch.setattr(model_files, "save_file", full_disk_after(0, model_files.save_file, SAFETENSORS_FULL))
    target = tmp_path / "models" / "ema.safetensors"

    def body(params, paths, run):
        model_files.save_model(model, target)

    with pytest.raises(SystemExit) as exit_:
        stage_main("train", body, params_path=str(tmp_path / "params.yaml"))
    assert str(exit_.value) == f"error: train: cannot write {target}: {FULL}"

    def other(params, paths, run):  # an OSError of a file the stage did not write atomically: file and reason
        raise OSError(errno.ENOSPC, FULL, "outputs/samples/manifest.json")

    with pytest.raises(SystemExit) as exit_:
        stage_main("sample", other, params_path=str(tmp_path / "params.yaml"))
    assert str(exit_.value) == f"error: sample: outputs/samples/manifest.json: {FULL}"


def test_a_dataloader_worker_death_ends_the_stage_in_one_line(tmp_path, monkeypatch):
    """PyTorch's SIGCHLD handler raises a worker's death wherever the stage is: one line, with the shared memory."""
    import yaml
    from helpers.params import compose_raw

    from ddpm.stage.harness import stage_main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_raw()))

    def body(params, paths, run):
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Bus error. It is possible that ...\nmore")

    with pytest.raises(SystemExit) as exit_:
        stage_main("train", body, params_path=str(tmp_path / "params.yaml"))
    message = str(exit_.value)
    assert message.startswith("error: train: DataLoader worker (pid 4242) is killed by signal: Bus error.")
    assert "\n" not in message and "(/dev/shm: " in message
