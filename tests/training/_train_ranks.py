"""Run by `accelerate launch` from test_train_distributed on two CPU ranks; rank 0 writes argv[-1]/result.json."""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from helpers.params import make_params
from safetensors.torch import save_file

import ddpm.training.loop
from ddpm.core.diffusion import GaussianDiffusion, LossType, VarType
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet, UNetConfig
from ddpm.training.step import MicroBatch, optimization_step

GLOBAL_BATCH, STEPS = 8, 3


def global_batches():
    """The same global batches (images, timesteps, noise) on every process."""
    g = torch.Generator().manual_seed(1)
    return [
        (
            torch.rand(GLOBAL_BATCH, 1, 8, 8, generator=g) * 2 - 1,
            torch.randint(0, 50, (GLOBAL_BATCH,), generator=g),
            torch.randn(GLOBAL_BATCH, 1, 8, 8, generator=g),
        )
        for _ in range(STEPS)
    ]


def run_steps(accelerator: Accelerator, accumulation: int = 1) -> dict[str, torch.Tensor]:
    """STEPS optimisation steps of a small learned-variance U-Net (hybrid loss) on this rank's share of each batch.

    Returns the weights and "grads": every step's synchronised gradient (flattened). Plain SGD, so that the
    weights differ between equivalent runs only by the gradients' rounding (Adam would amplify it).
    """
    torch.manual_seed(0)
    model = UNet(
        UNetConfig(
            in_channels=1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), resolution=8, dropout=0.0, learn_sigma=True
        )
    )
    diffusion = GaussianDiffusion(
        get_beta_schedule("linear", 50), var_type=VarType.LEARNED_RANGE, loss_type=LossType.HYBRID
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # see test_train_distributed.assert_close
    model, optimizer = accelerator.prepare(model, optimizer)
    micro = make_params({"train": {"batch_size": GLOBAL_BATCH, "grad_accumulation": accumulation}}).train.micro_batch(
        accelerator.num_processes
    )
    grads = []
    for x0, t, noise in global_batches():
        lo = accelerator.process_index * micro * accumulation
        mbs = [
            MicroBatch(x0[i : i + micro], t[i : i + micro], torch.ones(micro), noise[i : i + micro])
            for i in range(lo, lo + micro * accumulation, micro)
        ]
        optimization_step(accelerator, model, diffusion, optimizer, mbs, grad_clip=None)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    state = {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    return state | {"grads": torch.stack(grads)}


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

    ddpm.training.loop.save_checkpoint = counting("checkpoints_saved", ddpm.training.loop.save_checkpoint)
    ddpm.training.loop.save_model = counting("models_saved", ddpm.training.loop.save_model)
    seen = {}
    original_update = ddpm.training.loop.record_losses

    def record(acc, sampler, t, losses):
        original_update(acc, sampler, t, losses)
        seen["sampler"] = sampler

    ddpm.training.loop.record_losses = record
    params = make_params(
        {
            "dataset": "digits",
            "timesteps": 50,
            "timestep_sampler": "loss_aware",
            "data": {"resolution": 8},
            "model": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4], "dropout": 0.1},
            "train": {
                "steps": 6,
                "batch_size": 8,
                "checkpoint_every": 3,
                "log_every": 2,
                "sample_every": 3,
                "sample_images": 4,
                "sample_steps": 5,
                "shuffle_buffer": 50,
                "warmup": 2,
            },
        }
    )
    acc = Accelerator(cpu=True)
    models = {}

    def keep_model(fn):
        def wrapper(model, *args, **kwargs):
            models["ema"] = model
            return fn(model, *args, **kwargs)

        return wrapper

    ddpm.training.loop.train(
        params,
        shards,
        out / "ema.safetensors",
        out / "ck",
        accelerator=acc,
        log=counting("metric_logs", lambda *a: None),
        log_image=counting("image_logs", lambda *a: None),
    )
    sampler = seen["sampler"]
    history = torch.from_numpy(sampler.history.copy()).flatten()
    weights = flat(acc.unwrap_model(acc._models[0]).parameters())
    gathered = gather_object([(counts, history, weights)])
    if acc.is_main_process:
        (out / "result.json").write_text(
            json.dumps(
                {
                    "ranks": [g[0] for g in gathered],
                    "sampler_history_identical": bool(torch.equal(gathered[0][1], gathered[1][1])),
                    "weights_identical": bool(torch.equal(gathered[0][2], gathered[1][2])),
                }
            )
        )


if __name__ == "__main__":
    if sys.argv[1] == "equivalence":
        equivalence(Path(sys.argv[2]))
    else:
        train_two_ranks(Path(sys.argv[2]), Path(sys.argv[3]))
