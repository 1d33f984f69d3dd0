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

import numpy as np
import pytest
import torch
from _train_ranks import run_steps
from accelerate import Accelerator, debug_launcher
from accelerate.state import AcceleratorState
from helpers import ROOT
from helpers.ranks import launch_two_cpu_ranks
from safetensors.torch import load_file

from ddpm.core.unet import UNet, UNetConfig
from ddpm.training.loop import record_losses
from ddpm.training.timesteps import LossAwareTimesteps

HERE = Path(__file__).resolve().parent


def single_process(accumulation: int = 1) -> dict[str, torch.Tensor]:
    try:
        return run_steps(Accelerator(cpu=True), accumulation)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def launch(*args: str) -> dict:
    env = dict(
        os.environ,
        ACCELERATE_USE_CPU="1",
        PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]),
        OMP_NUM_THREADS="1",
    )
    config = ROOT / "conf" / "accelerate" / "cpu_2proc.yaml"  # the committed config, as documented
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--main_process_port",
        "0",
        str(HERE / "_train_ranks.py"),
        *args,
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(Path(args[-1], "result.json").read_text())


def assert_close(a: dict, b: dict) -> None:
    """Gradients equal to float rounding (relative to their scale), and so the weights after plain SGD steps.

    The weights are compared after SGD, not Adam: Adam's m/√v turns reduction-order rounding on a near-zero
    gradient into a whole step of either sign, so equal programs can end one Adam step apart.
    """
    assert a.keys() == b.keys()
    scale = b["grads"].abs().amax(dim=1, keepdim=True)
    torch.testing.assert_close(a["grads"] / scale, b["grads"] / scale, rtol=0, atol=1e-5)
    for k in a.keys() - {"grads"}:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_gradient_accumulation_matches_the_full_batch():
    full, accumulated = single_process(1), single_process(4)
    assert_close(accumulated, full)
    untrained = UNet(
        UNetConfig(in_channels=1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), resolution=8, learn_sigma=True)
    ).state_dict()
    assert not torch.equal(full["conv_out.weight"], untrained["conv_out.weight"])  # the steps did move the weights


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    result = launch("equivalence", str(tmp_path))
    assert result["ranks_identical"], "the two ranks hold different weights: gradients were not synchronised"
    assert_close(load_file(str(tmp_path / "two_ranks.safetensors")), single_process(1))


def test_two_rank_training_shares_sampler_history_and_only_rank_0_logs_and_writes(tmp_path, digit_shards):
    result = launch("train", str(digit_shards), str(tmp_path))
    ranks = result["ranks"]
    assert ranks[0]["checkpoints_saved"] == 2 and ranks[0]["models_saved"] == 1  # steps 3 and 6, final EMA
    # log_every 2 (and the warm-up's lr at step 1); sample_every 3: 0, 3, 6
    assert ranks[0]["metric_logs"] == 4 and ranks[0]["image_logs"] == 3
    assert ranks[1] == {"checkpoints_saved": 0, "models_saved": 0, "metric_logs": 0, "image_logs": 0}
    assert result["weights_identical"] and result["sampler_history_identical"]
    assert (tmp_path / "ema.safetensors").is_file()
    [run] = (tmp_path / "ck").iterdir()  # one run folder: the fingerprint of these params and shards
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("step-")) == ["step-000000003", "step-000000006"]


@pytest.mark.parametrize("name,processes", [("single_gpu", 1), ("multi_gpu", 8), ("cpu_2proc", 2)])
def test_committed_accelerate_configs_load(name, processes):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "conf" / "accelerate" / f"{name}.yaml"))
    assert cfg.num_processes == processes and cfg.num_machines == 1 and cfg.mixed_precision == "no"


def _shared_history():
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2
    sampler = LossAwareTimesteps(4, history=3)
    rank = acc.process_index
    for step in range(6):
        t = torch.tensor([(step + rank) % 4, (step + 2 * rank + 1) % 4])
        losses = torch.tensor([1.0 + rank + step, 10.0 * (rank + 1) + step])  # different on each rank
        record_losses(acc, sampler, t, losses)
    state = torch.from_numpy(np.concatenate([sampler.history.ravel(), sampler.counts.astype(np.float64)]))
    everyone = acc.gather(state[None])
    assert torch.equal(everyone[0], everyone[1]), "ranks hold different loss histories"
    assert sampler.counts.sum() == 4 * 3  # both ranks' 24 losses arrived; each step keeps its last 3


def test_loss_aware_history_is_shared_across_two_ranks():
    debug_launcher(_shared_history, num_processes=2)


def test_two_ranks_stop_together_at_the_logging_step_one_was_asked_at(digit_shards, tmp_path):
    """Only rank 0 gets the signal; both stop after the same step (they agree in the log's collective) and the
    checkpoint holds both ranks' generator states."""
    from ddpm.training.checkpoints import list_checkpoints

    launch_two_cpu_ranks(HERE / "_stop_ranks.py", str(digit_shards), str(tmp_path))  # fresh processes, not forks
    lines = [(tmp_path / f"rank{r}").read_text() for r in (0, 1)]
    assert lines[0].startswith("stopped by SIGINT at step 5; checkpoint ")
    assert lines[1] == lines[0].replace("by SIGINT", "by another process")
    [folder] = [p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()]
    [checkpoint] = list_checkpoints(folder)
    assert checkpoint.step == 5
    keys = load_file(str(checkpoint.path / "state.safetensors")).keys()
    assert {"rng.0.cpu", "rng.1.cpu"} <= set(keys)
    assert not (tmp_path / "ema.safetensors").exists()
