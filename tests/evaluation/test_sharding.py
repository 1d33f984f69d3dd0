"""Evaluation split over processes: fixed chunks, round-robin, gathered in index order; the NLL, the Inception
features and a DDIM cell's FID come out identical with one and two processes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import free_port
from helpers.ranks import launch_two_cpu_ranks
from helpers.sharding import eval_images, sharded_evaluation

from ddpm.evaluation import fid
from ddpm.parallel import ONE_PROCESS, WorkShare

HERE = Path(__file__).resolve().parent


def test_a_shard_owns_every_world_th_chunk_and_gathers_in_index_order():
    assert [i for i, _ in WorkShare(1, 3).mine("abcdefg")] == [1, 4]
    assert [c for _, c in WorkShare(0, 3).mine("abcdefg")] == ["a", "d", "g"]
    assert ONE_PROCESS.gather({1: "b", 0: "a"}) == ["a", "b"]
    with pytest.raises(RuntimeError, match="not 0..1"):
        ONE_PROCESS.gather({0: "a", 2: "c"})
    with pytest.raises(ValueError, match="rank 2 is outside a group of 2"):
        WorkShare(2, 2)


def test_one_and_two_processes_give_identical_nll_features_and_fid(tmp_path):
    reference = tmp_path / "reference.npz"
    fid.write_reference(reference, eval_images(6, seed=9).split(3), feature_images=6, split="train", device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the order of a float reduction depends on the thread count
    try:
        one = sharded_evaluation(reference, ONE_PROCESS)
    finally:
        torch.set_num_threads(threads)
    launch_two_cpu_ranks(HERE / "_eval_ranks.py", str(tmp_path / "two.npz"), str(reference))
    with np.load(tmp_path / "two.npz") as two:
        assert set(two.files) == set(one)
        for key, value in one.items():  # what was split over processes: bit for bit
            if key != "fid":
                np.testing.assert_array_equal(two[key], value, err_msg=key)
        # The FID of those identical features is float64 linear algebra in numpy's BLAS, whose thread count
        # differs between this process and the ranks: equal to rounding, not bit for bit.
        assert float(two["fid"]) == pytest.approx(float(one["fid"]), rel=1e-6)
    assert one["count"] == 7 and one["features"].shape == (7, 2048) and one["cell_samples"] == 7
    assert np.isfinite(one["total_bpd"]) and np.isfinite(one["fid"])


def _uneven_work(rank: int, port: int, long_wait: bool, out: str) -> None:
    import datetime
    import time

    import torch.distributed as dist

    # A default group whose timeout (3 s) stands for NCCL's watchdog; rank 1's share takes twice as long.
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=3)
    )
    from ddpm import peers

    peers.start_heartbeat()  # as every stage process does when its group forms
    share = WorkShare(rank, 2)
    time.sleep(6.0 if rank == 1 else 0.0)
    try:
        share.wait_for_all() if long_wait else share.barrier()
        Path(f"{out}.{rank}").write_text("ok")
    except RuntimeError as err:
        Path(f"{out}.{rank}").write_text(f"failed: {err}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("long_wait", [True, False])
def test_the_wait_for_the_slowest_rank_outlasts_the_default_groups_timeout(tmp_path, monkeypatch, long_wait):
    """Ranks that finish their chunks early wait for the slowest one (sampling: up to a chunk) as long as it is
    heard from (here 6 s of work against 2 s of allowed silence); the default group's barrier would time out."""
    import torch.multiprocessing as mp

    monkeypatch.setenv("DDPM_PEER_SILENCE_S", "2")  # read by the spawned processes as they import ddpm.peers

    out = str(tmp_path / "rank")
    mp.spawn(_uneven_work, args=(free_port(), long_wait, out), nprocs=2, join=True)
    if long_wait:
        assert [Path(f"{out}.{r}").read_text() for r in (0, 1)] == ["ok", "ok"]
    else:
        assert Path(f"{out}.0").read_text().startswith("failed")


def test_a_rank_decodes_and_reads_only_the_batches_it_owns(tmp_path):
    """The test split's batches and the samples' batches: where a rank owns batch i it gets exactly what one
    process gets; the others are Elsewhere(size), neither decoded nor read."""
    import json

    from helpers.datasets import write_shards
    from helpers.params import make_params

    from ddpm.data.loader import iter_batches
    from ddpm.parallel import Elsewhere
    from ddpm.sample_store import MANIFEST, load_samples, sample_batches

    shards = write_shards(make_params(profile="tiny"), tmp_path / "digits")
    for limit in (None, 70):
        one = list(iter_batches(shards, "test", 32, limit))
        mine = list(iter_batches(shards, "test", 32, limit, share=WorkShare(1, 3)))
        assert len(one) == len(mine) and sum(len(b) for b in one) == (limit or sum(len(b) for b in mine))
        for i, (a, b) in enumerate(zip(one, mine, strict=True)):
            assert torch.equal(a, b) if i % 3 == 1 else b == Elsewhere(len(a))

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (13, 4, 4, 3), dtype=np.uint8)
    chunks = []
    for k, first in enumerate(range(0, 13, 5)):  # chunks of 5, batches of 4: batches straddle chunks
        name = f"chunk-{k:06d}.npz"
        np.savez(tmp_path / name, images=images[first : first + 5])
        chunks.append({"name": name, "first": first, "count": len(images[first : first + 5])})
    (tmp_path / MANIFEST).write_text(json.dumps({"chunks": chunks}))
    assert (load_samples(tmp_path) == images).all()
    whole = list(fid.to_uint8_rgb_batches(images, 4))
    one = sample_batches(tmp_path, 4)
    assert one.images == 13 and all(torch.equal(a, b) for a, b in zip(whole, one, strict=True))
    mine = list(sample_batches(tmp_path, 4, WorkShare(0, 2)))
    assert [len(b) for b in mine] == [4, 4, 4, 1] and mine[1] == Elsewhere(4) and mine[3] == Elsewhere(1)
    assert torch.equal(mine[0], whole[0]) and torch.equal(mine[2], whole[2])


def test_the_bound_counts_progress_in_terms_within_a_batch(capsys):
    """One batch of the bound can take minutes (64 images × 1000 terms on a CPU): its log lines count terms."""
    from helpers.networks import sampling_setup

    from ddpm.evaluation.likelihood import nll_bpd
    from ddpm.progress import Counted

    inference, _ = sampling_setup("ddim", 0.0)  # T = 50
    nll_bpd(inference.diffusion, inference.model, Counted(eval_images().split(4), 7), seed=5, device="cpu")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("nll: 10% (") and "/350 term)" in lines[0]  # 7 images × 50 terms, one line a tenth
    assert len(lines) == 10 and lines[-1].startswith("nll: done (350/350 term)")
