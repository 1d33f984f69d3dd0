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
def test_the_wait_for_the_slowest_rank_outlasts_the_default_groups_timeout(tmp_path, long_wait):
    """Ranks that finish their chunks early wait for the slowest one (sampling: up to a chunk) on a group of
    their own with a long timeout; the default group's barrier would time out."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank")
    mp.spawn(_uneven_work, args=(free_port(), long_wait, out), nprocs=2, join=True)
    if long_wait:
        assert [Path(f"{out}.{r}").read_text() for r in (0, 1)] == ["ok", "ok"]
    else:
        assert Path(f"{out}.0").read_text().startswith("failed")
