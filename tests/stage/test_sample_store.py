"""Chunked sampling: identical images whatever the number of processes, and after an interruption."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from helpers.networks import sampling_setup
from helpers.ranks import launch_two_cpu_ranks

from ddpm.sample_store import chunk_layout, clear_stale, load_samples, sample_chunks, write_manifest

HERE = Path(__file__).resolve().parent


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("chunk-*.npz"))}


def launch_two_ranks(out_dir, sampler, eta):
    launch_two_cpu_ranks(HERE / "_sample_ranks.py", str(out_dir), sampler, str(eta), timeout=300)


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.5), ("ancestral", 0.0)])
def test_one_and_two_processes_write_identical_chunks(tmp_path, sampler, eta):
    inference, cfg = sampling_setup(sampler, eta)
    clear_stale(tmp_path / "one", "fp")
    assert sample_chunks(inference, cfg, 7, tmp_path / "one") == [
        "chunk-000000.npz",
        "chunk-000001.npz",
        "chunk-000002.npz",
    ]
    launch_two_ranks(tmp_path / "two", sampler, eta)
    assert digests(tmp_path / "one") == digests(tmp_path / "two")
    write_manifest(tmp_path / "one", cfg, "fp")
    images = load_samples(tmp_path / "one")
    assert images.shape == (10, 8, 8, 1) and images.dtype == np.uint8
    assert len({img.tobytes() for img in images}) == 10  # every image has its own noise


def test_interrupted_sampling_redoes_only_missing_chunks(tmp_path):
    inference, cfg = sampling_setup()
    out = tmp_path / "s"
    clear_stale(out, "fp")
    sample_chunks(inference, cfg, 7, out)
    before = digests(out)
    (out / "chunk-000001.npz").unlink()  # lost to the interruption
    (out / "chunk-000002.npz").write_bytes(b"half a file")  # or cut short
    assert sample_chunks(inference, cfg, 7, out) == ["chunk-000001.npz", "chunk-000002.npz"]
    assert digests(out) == before
    clear_stale(out, "other-params")  # a different fingerprint discards the old chunks
    assert not list(out.glob("chunk-*"))


def test_chunk_layout_and_incomplete_manifest(tmp_path):
    assert chunk_layout(10, 4) == [("chunk-000000.npz", 0, 4), ("chunk-000001.npz", 4, 4), ("chunk-000002.npz", 8, 2)]
    _, cfg = sampling_setup()
    clear_stale(tmp_path, "fp")
    with pytest.raises(ValueError, match="samples: chunk .*chunk-000000.npz is missing or incomplete"):
        write_manifest(tmp_path, cfg, "fp")


def test_an_interrupted_runs_chunks_survive_the_output_folder_being_put_back(tmp_path, monkeypatch):
    """`dvc exp run` puts the samples folder back as the last commit had it before the stage reruns: the chunks
    an interrupted run made wait in the spare folder beside it, and the rerun reuses them."""
    from helpers.params import make_params

    from ddpm import sample_store
    from ddpm.parallel import ONE_PROCESS
    from ddpm.storage.files import write_npz

    inference, cfg = sampling_setup()
    params = make_params({"timesteps": 50, "sample": cfg.model_dump(mode="json")})
    model = tmp_path / "ema.safetensors"
    model.write_bytes(b"the weights")  # only their digest enters the fingerprint
    whole = sample_store.fill(tmp_path / "whole", inference, params, model, ONE_PROCESS)
    assert whole is not None and whole.generated == 10

    out = tmp_path / "samples"
    calls = []

    def killed_after_one_chunk(path, **arrays):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        write_npz(path, **arrays)

    monkeypatch.setattr(sample_store, "write_npz", killed_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        sample_store.fill(out, inference, params, model, ONE_PROCESS)
    monkeypatch.undo()
    # DVC restores the committed folder: another run's finished samples, with their own fingerprint
    for p in out.iterdir():
        p.unlink()
    (out / "fingerprint").write_text("the committed run's")
    (out / "chunk-000000.npz").write_bytes(b"another run's chunk")
    again = sample_store.fill(out, inference, params, model, ONE_PROCESS)
    assert again is not None and (again.generated, again.total) == (6, 10)  # chunk 0 (4 images) reused
    assert digests(out) == digests(tmp_path / "whole")
    assert not (tmp_path / ".samples.chunks").exists()
