"""Fixtures shared by the whole suite (importable helpers live in helpers.py)."""

import pytest
import torch

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.gaussian import MU, S
from ddpm.core.schedules import get_beta_schedule


@pytest.fixture(scope="session", autouse=True)
def environment_of_the_session(tmp_path_factory):
    """Served shards that training caches go to the session's temporary folder, not the system's; stages run by
    tests outside DVC log to MLflow as under DVC (tests of the stage scripts check what they log)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DDPM_SHARD_CACHE", str(tmp_path_factory.mktemp("shard-cache")))
    mp.setenv("DDPM_TRACK_OUTSIDE_DVC", "1")
    yield
    mp.undo()


@pytest.fixture
def gaussian_grid_data():
    """64 draws of Gaussian data N(MU, S² I), rounded to the 256-level grid."""
    g = torch.Generator().manual_seed(0)
    x = MU + S * torch.randn(64, 1, 4, 4, generator=g, dtype=torch.float64)
    return torch.round((x + 1) * 127.5) / 127.5 - 1


@pytest.fixture
def linear100():
    return GaussianDiffusion(get_beta_schedule("linear", 100))


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory):
    """The digits' train and test splits as 8×8 shards of 400 images."""
    from helpers.datasets import write_shards
    from helpers.params import make_params

    params = make_params(
        {
            "dataset": "digits",
            "data": {"resolution": 8, "shard_size": 400},
            "model": {"ch_mult": [1, 2], "attn_resolutions": [4]},
        }
    )
    return write_shards(params, tmp_path_factory.mktemp("shards") / "digits")


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu need CUDA: skipped on a machine without it (CI, this project's CPU machines)."""
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
