"""The papers' configurations as profiles: their parameter counts, and that each really trains."""

import pytest
import torch
from helpers.params import make_params

from ddpm.core.unet import count_parameters
from ddpm.factory import build_diffusion, build_model

COUNTS = {  # parameters of the U-Net of each profile, RGB
    "cifar10_ddpm": 35_746_307,  # DDPM: 35.7M
    "ddpm_lsun256": 113_673_219,  # DDPM: 114M
    "ddpm_lsun256_large": 255_677_955,  # DDPM: "~256M"
    "iddpm_cifar10": 52_546_438,  # iDDPM's released cifar10_uncond_50M_500K (scale-shift norm, 2C outputs)
    "released_ddpm_cifar10": 35_746_307,
    "released_ddpm_church": 113_673_219,
    "released_iddpm_cifar10_hybrid": 52_546_438,
    "released_iddpm_bedroom": 113_676_678,  # iDDPM's lsun_uncond_100M_1200K_bs128
}


@pytest.mark.parametrize("profile", sorted(COUNTS))
def test_parameter_counts(profile):
    p = make_params(profile=profile)
    assert p.profile == profile
    assert count_parameters(build_model(p, channels=3)) == COUNTS[profile]


@pytest.mark.slow
@pytest.mark.parametrize("profile", sorted(p for p in COUNTS if not p.startswith("released")))
def test_paper_configurations_take_training_steps(profile):
    p = make_params(profile=profile)
    torch.manual_seed(0)
    model, diffusion = build_model(p, channels=3), build_diffusion(p)
    opt = torch.optim.Adam(model.parameters(), lr=p.train.lr)
    res = p.data.resolution
    x0 = torch.rand(2, 3, res, res) * 2 - 1
    losses = []
    for _ in range(2):
        t = torch.randint(0, diffusion.num_timesteps, (2,))
        loss = diffusion.training_losses(model, x0, t)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
