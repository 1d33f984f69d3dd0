"""The training loop (DDPM Algorithm 1) under Accelerate: Adam, linear warm-up, gradient clipping and
accumulation, mixed precision, EMA, resumable checkpoints, telemetry."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from ddpm.config import Params, Precision
from ddpm.core.images import image_grid, to_model_range
from ddpm.core.unet import count_parameters
from ddpm.data.loader import train_stream
from ddpm.data.shards import read_manifest, split_identity
from ddpm.factory import build_diffusion, build_model
from ddpm.precision import IEEE, TF32, set_fp32_precision
from ddpm.progress import progress
from ddpm.storage.files import exclusive_lock
from ddpm.storage.model_files import save_model
from ddpm.training.determinism import deterministic_algorithms
from ddpm.training.ema import EMA
from ddpm.training.timesteps import make_timesteps

from .checkpoints import (
    LOCK,
    adopt_flat_checkpoints,
    list_checkpoints,
    load_checkpoint,
    open_run,
    other_runs,
    save_checkpoint,
)
from .fingerprint import changed_params, fingerprinted_params, training_fingerprint
from .step import Divergence, MicroBatch, build_optimizer, optimization_step
from .telemetry import Telemetry, ema_sample_grid
from .transfer import to_device

LogFn = Callable[[dict[str, float], int], None]
ImageLogFn = Callable[[np.ndarray, str, int], None]


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    parameters: int
    images_per_second: float
    resumed_from: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    fingerprint: str = ""  # of the training params and shards (``ddpm.training.fingerprint``)
    checkpoints: Path | None = None  # the run folder its checkpoints are in

    def metrics(self) -> dict[str, float]:
        """What metrics/train.json holds."""
        return {
            "final_loss": self.final_loss,
            "steps": self.steps,
            "parameters": self.parameters,
            "images_per_second": self.images_per_second,
        }


def record_losses(accelerator: Accelerator, sampler, t: torch.Tensor, losses: torch.Tensor) -> None:
    """Give the timestep sampler every process's (t, loss), so its history is identical on all ranks; a sampler
    that does not learn from losses (uniform) needs no gather."""
    if sampler.learns_from_losses:
        sampler.update(*accelerator.gather((t, losses.detach())))


def segment_seed(seed: int, rank: int, segment: int) -> int:
    """The seed of one checkpoint interval on one rank: resuming at a boundary replays the same randomness."""
    return int(np.random.SeedSequence([seed, rank, segment]).generate_state(1)[0])


def match_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give restored optimizer moments their parameter's memory format (checkpoints store them contiguous)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape:
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)  # empty_like keeps p's layout


def make_accelerator(params: Params) -> Accelerator:
    """The Accelerator for ``params.train`` (launch settings such as the process count come from the launcher)."""
    precision = params.train.mixed_precision
    if precision is Precision.FP16 and not torch.cuda.is_available():
        raise ValueError("train.mixed_precision: 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on CPU")
    set_fp32_precision(TF32 if precision is Precision.TF32 else IEEE)  # what float32 means on a GPU
    return Accelerator(mixed_precision="no" if precision is Precision.TF32 else precision.value)


def train(
    params: Params,
    shard_dir: Path,
    model_path: Path,
    checkpoint_root: Path,
    log: LogFn | None = None,
    accelerator: Accelerator | None = None,
    log_image: ImageLogFn | None = None,
) -> TrainResult:
    """Train the network of ``params`` on the shards and write the EMA weights to ``model_path`` (rank 0).

    ``train.batch_size`` is the global batch: each optimizer step averages the loss over that many images,
    split over the processes and ``train.grad_accumulation`` micro-batches. Checkpoints go to the run folder
    ``checkpoint_root/<fingerprint>`` of these training params and shards, and training resumes from its newest
    one; other params train into their own folder, so no checkpoint is ever removed by a change of params. A
    second process training the same fingerprint waits for the first, then resumes from its checkpoints. Data
    order and random draws are reseeded at every checkpoint boundary, so an interrupted and resumed run ends with
    the same weights as an uninterrupted one. Only the main process logs and writes.
    """
    accelerator = accelerator or make_accelerator(params)
    data_digest = split_identity(shard_dir, "train", params.data.shards_url)["digest"]
    fingerprint = training_fingerprint(params, data_digest)
    folder = Path(checkpoint_root) / fingerprint
    lock: AbstractContextManager[None] = nullcontext()
    if accelerator.is_main_process:
        adopt_flat_checkpoints(checkpoint_root)

        def waiting(holder: str) -> None:
            print(
                f"train: {holder} is training these params into {folder}; waiting for it, then resuming from its "
                "checkpoints",
                flush=True,
            )

        lock = exclusive_lock(folder / LOCK, on_wait=waiting)
    with lock:
        if accelerator.is_main_process:
            open_run(folder, {"fingerprint": fingerprint, "data": data_digest, "params": fingerprinted_params(params)})
        accelerator.wait_for_everyone()
        with deterministic_algorithms(params.train.deterministic):
            return _train(params, shard_dir, model_path, folder, fingerprint, log, accelerator, log_image)


def fresh_start_note(folder: Path, params: Params) -> str:
    """The line training prints when its run folder holds no checkpoint: where it starts, and the newest other
    run's checkpoints that it leaves in place, with the params that differ."""
    note = f"train: starting at step 0 in {folder}"
    others = other_runs(folder.parent, folder.name)
    if not others:
        return note
    other = others[0]
    if other.params is None:
        return f"{note}; {other.newest.path} (step {other.newest.step}, params not recorded) is kept"
    changes = changed_params(other.params, fingerprinted_params(params)) or ["the training shards"]
    shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    return f"{note}; {other.newest.path} (step {other.newest.step}) is kept, trained with other params: {shown}"


def _train(
    params: Params,
    shard_dir: Path,
    model_path: Path,
    folder: Path,
    fingerprint: str,
    log: LogFn | None,
    accelerator: Accelerator,
    log_image: ImageLogFn | None,
) -> TrainResult:
    """``train`` inside its run folder ``folder``, whose lock the main process holds."""
    cfg = params.train
    manifest = read_manifest(shard_dir, params.data.shards_url)
    channels = manifest["splits"]["train"]["shape"][2]
    if manifest["splits"]["train"]["shape"][0] != params.data.resolution:
        raise ValueError(
            f"data.resolution: {params.data.resolution} differs from the shards' "
            f"{manifest['splits']['train']['shape'][0]}; rerun the prepare stage"
        )
    micro = cfg.micro_batch(accelerator.num_processes)
    rank, device = accelerator.process_index, accelerator.device
    torch.manual_seed(int(np.random.SeedSequence([params.seed]).generate_state(1)[0]))  # same init on every rank
    diffusion = build_diffusion(params)
    timesteps = make_timesteps(params.timestep_sampler, diffusion.num_timesteps)
    model = build_model(params, channels)
    ema = EMA(model, cfg.ema_decay)  # float32, outside DDP
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    # The EMA in the network's layout: with equal strides the foreach lerp is one kernel over all tensors, not one
    # per tensor whose layout differs (saved files are contiguous either way).
    model.to(memory_format=memory_format)
    ema.model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    )
    start, history = 0, []
    checkpoints = list_checkpoints(folder)
    if checkpoints:
        state = load_checkpoint(checkpoints[-1].path, model, ema.model, optimizer, scheduler)
        match_layout(optimizer)
        timesteps.load_state_dict(state["sampler_state"])
        start, history = min(state["step"], cfg.steps), state["history"]
        accelerator.print(f"train: resuming from {checkpoints[-1].path} (step {state['step']})")
    elif accelerator.is_main_process:
        print(fresh_start_note(folder, params), flush=True)
    model.gradient_checkpointing = cfg.activation_checkpointing
    if cfg.compile:
        model.compile()  # in place: parameter names and state_dict keys stay as they are
    model, optimizer = accelerator.prepare(model, optimizer)
    ema.model.to(device)
    shape = (channels, params.data.resolution, params.data.resolution)

    telemetry = Telemetry(diffusion.num_timesteps)
    divergence = Divergence(device, loss_scaled=accelerator.scaler is not None)
    images_per_second = history[-1]["images_per_second"] if history else 0.0
    loss_value = history[-1]["loss"] if history else math.nan
    batches: Generator | None = None
    bar = progress("train", cfg.steps, "step", initial=start, enabled=accelerator.is_main_process)

    def log_ema_grid(step: int) -> None:
        if cfg.sample_every and accelerator.is_main_process and log_image:
            images = ema_sample_grid(
                diffusion, ema.model, cfg.sample_images, shape, cfg.sample_steps, params.seed, device
            )
            log_image(image_grid(images, cfg.sample_images), "ema_samples", step)

    if start == 0:
        log_ema_grid(0)  # the initial weights' samples: the series starts from noise
    for step in range(start + 1, cfg.steps + 1):
        if batches is None or (step - 1) % cfg.checkpoint_every == 0:
            segment = (step - 1) // cfg.checkpoint_every
            torch.manual_seed(segment_seed(params.seed, rank, segment))
            if batches is not None:
                batches.close()  # its workers end now
            # Each rank goes through all shards with its own seed, so the loader is not passed through
            # accelerator.prepare.
            batches = train_stream(
                shard_dir,
                micro,
                segment_seed(params.seed, rank, segment),
                cfg.random_flip,
                cfg.shuffle_buffer,
                params.data.verify,
                params.data.shards_url,
                workers=cfg.loader_workers,
                pin_memory=device.type == "cuda",
            )
        micro_batches = []
        for _ in range(cfg.grad_accumulation):
            x0 = to_model_range(to_device(next(batches)[0], device)).contiguous(memory_format=memory_format)
            micro_batches.append(MicroBatch(x0, *timesteps.draw(x0.shape[0], device)))
        loss, terms_list, grad_norm = optimization_step(
            accelerator, model, diffusion, optimizer, micro_batches, cfg.grad_clip
        )
        divergence.add(step, loss, grad_norm)
        if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or step == cfg.steps:
            try:
                divergence.check(step, lambda v: accelerator.reduce(v, "sum"))
            except FloatingPointError as err:
                raise FloatingPointError(f"{err}; stopping (the last checkpoint in {folder} is kept)") from None
        scheduler.step()
        ema.update(accelerator.unwrap_model(model))
        t_all = torch.cat([mb.t for mb in micro_batches])
        terms = {k: torch.cat([tm[k].detach().float() for tm in terms_list]) for k in terms_list[0]}
        record_losses(accelerator, timesteps, t_all, terms["loss"])
        telemetry.add(loss, terms, t_all)
        if step % cfg.log_every == 0 or step == cfg.steps:
            summary = telemetry.summary(cfg.batch_size, lambda v: accelerator.reduce(v, "sum"))
            loss_value, images_per_second = summary["loss"], summary["images_per_second"]
            lr = float(scheduler.get_last_lr()[0])
            record = {
                "step": step,
                "loss": loss_value,
                "mse": summary["mse"],
                "grad_norm": float(grad_norm),
                "lr": lr,
                "images_per_second": images_per_second,
            }
            history.append(record)
            bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{images_per_second:.0f}")
            if log is not None and accelerator.is_main_process:
                log(summary | {"grad_norm": float(grad_norm), "lr": lr}, step)
            telemetry.reset()
        if cfg.sample_every and step % cfg.sample_every == 0:
            log_ema_grid(step)
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(
                    folder,
                    step,
                    fingerprint,
                    accelerator.unwrap_model(model),
                    ema.model,
                    optimizer,
                    scheduler,
                    timesteps.state_dict(),
                    history,
                    cfg.keep_checkpoints,
                )
    bar.close()
    if batches is not None:
        batches.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model(ema.model, model_path, ema_decay=str(cfg.ema_decay), steps=str(cfg.steps))
    return TrainResult(
        steps=cfg.steps,
        final_loss=loss_value,
        parameters=count_parameters(ema.model),
        images_per_second=images_per_second,
        resumed_from=start,
        history=history,
        fingerprint=fingerprint,
        checkpoints=folder,
    )
