"""Run by `accelerate launch` from test_train_distributed on two CPU ranks; rank 0 writes argv[-1]/result.json."""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors.torch import save_file
from test_train_distributed import run_steps

import ddpm.train
from ddpm.config import validate_params


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().float().flatten().cpu() for t in tensors])


def equivalence(out: Path) -> None:
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2, acc.num_processes
    state = run_steps(acc)
    both = gather_object([flat(v for k, v in state.items() if k != "grads")])
    if acc.is_main_process:
        save_file({k: v.contiguous() for k, v in state.items()}, str(out / "two_ranks.safetensors"))
        (out / "result.json").write_text(json.dumps({"ranks_identical": bool(torch.equal(both[0], both[1]))}))


def train_two_ranks(shards: Path, out: Path) -> None:
    counts = {"checkpoints_saved": 0, "models_saved": 0, "metric_logs": 0, "image_logs": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    ddpm.train.save_checkpoint = counting("checkpoints_saved", ddpm.train.save_checkpoint)
    ddpm.train.save_model = counting("models_saved", ddpm.train.save_model)
    seen = {}
    original_update = ddpm.train.record_losses

    def record(acc, sampler, t, losses):
        original_update(acc, sampler, t, losses)
        seen["sampler"] = sampler

    ddpm.train.record_losses = record
    params = validate_params({
        "dataset": "digits", "timesteps": 50, "timestep_sampler": "loss_aware", "data": {"resolution": 8},
        "model": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4], "dropout": 0.1},
        "train": {"steps": 6, "batch_size": 8, "checkpoint_every": 3, "log_every": 2, "sample_every": 3,
                  "sample_images": 4, "sample_steps": 5, "shuffle_buffer": 50, "warmup": 2},
    })
    acc = Accelerator(cpu=True)
    models = {}

    def keep_model(fn):
        def wrapper(model, *args, **kwargs):
            models["ema"] = model
            return fn(model, *args, **kwargs)
        return wrapper

    ddpm.train.train(params, shards, out / "ema.safetensors", out / "ck", accelerator=acc,
                     log=counting("metric_logs", lambda *a: None), log_image=counting("image_logs", lambda *a: None))
    sampler = seen["sampler"]
    history = torch.from_numpy(sampler.history.copy()).flatten()
    weights = flat(acc.unwrap_model(acc._models[0]).parameters())
    gathered = gather_object([(counts, history, weights)])
    if acc.is_main_process:
        (out / "result.json").write_text(json.dumps({
            "ranks": [g[0] for g in gathered],
            "sampler_history_identical": bool(torch.equal(gathered[0][1], gathered[1][1])),
            "weights_identical": bool(torch.equal(gathered[0][2], gathered[1][2])),
        }))


if __name__ == "__main__":
    if sys.argv[1] == "equivalence":
        equivalence(Path(sys.argv[2]))
    else:
        train_two_ranks(Path(sys.argv[2]), Path(sys.argv[3]))
