"""Multi-process training: two CPU ranks (gloo, via `accelerate launch`) against one process.

Proves that gradients are synchronised (the ranks hold identical weights and match one process with the same
global batch), that gradient accumulation is the same optimisation, that the loss-aware sampler's history is
shared, and that only rank 0 logs and writes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from ddpm.diffusion import GaussianDiffusion, LossType, VarType
from ddpm.schedules import get_beta_schedule
from ddpm.train_step import MicroBatch, build_optimizer, micro_batch_size, optimization_step
from ddpm.unet import UNet, UNetConfig

HERE = Path(__file__).resolve().parent
GLOBAL_BATCH, STEPS = 8, 3


def global_batches():
    """The same global batches (images, timesteps, noise) on every process."""
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(GLOBAL_BATCH, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 50, (GLOBAL_BATCH,), generator=g),
             torch.randn(GLOBAL_BATCH, 1, 8, 8, generator=g)) for _ in range(STEPS)]


def run_steps(accelerator: Accelerator, accumulation: int = 1) -> dict[str, torch.Tensor]:
    """STEPS optimisation steps of a small learned-variance U-Net (hybrid loss) on this rank's share of each batch.

    Returns the weights and "grads": every step's synchronised gradient (flattened). Gradients are the sharp
    check: Adam's first steps move each weight by about ±lr whatever the gradient's scale, so near-zero gradients
    that differ only by float rounding can move a weight in different directions.
    """
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), resolution=8, dropout=0.0,
                            learn_sigma=True))
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 50), var_type=VarType.LEARNED_RANGE,
                                  loss_type=LossType.HYBRID)
    optimizer = build_optimizer(model, 1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    micro = micro_batch_size(GLOBAL_BATCH, accelerator.num_processes, accumulation)
    grads = []
    for step, (x0, t, noise) in enumerate(global_batches(), start=1):
        lo = accelerator.process_index * micro * accumulation
        mbs = [MicroBatch(x0[i : i + micro], t[i : i + micro], torch.ones(micro), noise[i : i + micro])
               for i in range(lo, lo + micro * accumulation, micro)]
        optimization_step(accelerator, model, diffusion, optimizer, mbs, grad_clip=None, step=step)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    state = {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    return state | {"grads": torch.stack(grads)}


def single_process(accumulation: int = 1) -> dict[str, torch.Tensor]:
    try:
        return run_steps(Accelerator(cpu=True), accumulation)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def launch(*args: str) -> dict:
    env = dict(os.environ, ACCELERATE_USE_CPU="1", PYTHONPATH=str(HERE), OMP_NUM_THREADS="1")
    config = HERE.parent / "conf" / "accelerate" / "cpu_2proc.yaml"  # the committed config, as documented
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--main_process_port",
           "0", str(HERE / "_train_ranks.py"), *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(Path(args[-1], "result.json").read_text())


def assert_close(a: dict, b: dict) -> None:
    """Gradients equal to float rounding (relative to their scale); weights within a tenth of one Adam step."""
    assert a.keys() == b.keys()
    scale = b["grads"].abs().amax(dim=1, keepdim=True)
    torch.testing.assert_close(a["grads"] / scale, b["grads"] / scale, rtol=0, atol=1e-5)
    for k in a.keys() - {"grads"}:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def test_gradient_accumulation_matches_the_full_batch():
    full, accumulated = single_process(1), single_process(4)
    assert_close(accumulated, full)
    untrained = UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), resolution=8,
                                learn_sigma=True)).state_dict()
    assert not torch.equal(full["conv_out.weight"], untrained["conv_out.weight"])  # the steps did move the weights


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    result = launch("equivalence", str(tmp_path))
    assert result["ranks_identical"], "the two ranks hold different weights: gradients were not synchronised"
    assert_close(load_file(str(tmp_path / "two_ranks.safetensors")), single_process(1))


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory):
    from ddpm import datasets, shards
    from ddpm.config import validate_params

    p = validate_params({"dataset": "digits", "data": {"resolution": 8}, "model": {"ch_mult": [1, 2]}})
    out = tmp_path_factory.mktemp("shards") / "digits"
    shards.write_dataset({"train": datasets.iter_split(p, "train")}, out, 400, {})
    return out


def test_two_rank_training_shares_sampler_history_and_only_rank_0_logs_and_writes(tmp_path, digit_shards):
    result = launch("train", str(digit_shards), str(tmp_path))
    ranks = result["ranks"]
    assert ranks[0]["checkpoints_saved"] == 2 and ranks[0]["models_saved"] == 1  # steps 3 and 6, final EMA
    assert ranks[0]["metric_logs"] == 3 and ranks[0]["image_logs"] == 2  # log_every 2, sample_every 3
    assert ranks[1] == {"checkpoints_saved": 0, "models_saved": 0, "metric_logs": 0, "image_logs": 0}
    assert result["weights_identical"] and result["sampler_history_identical"]
    assert (tmp_path / "ema.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["step-000000003", "step-000000006"]


@pytest.mark.parametrize("name,processes", [("single_gpu", 1), ("multi_gpu", 8), ("cpu_2proc", 2)])
def test_committed_accelerate_configs_load(name, processes):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(HERE.parent / "conf" / "accelerate" / f"{name}.yaml"))
    assert cfg.num_processes == processes and cfg.num_machines == 1 and cfg.mixed_precision == "no"
