"""The training loop (DDPM Algorithm 1) under Accelerate: Adam, linear warm-up, gradient clipping, EMA."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm import tqdm

from .build import build_diffusion, build_model
from .checkpoint import save_model
from .config import Params
from .ema import EMA
from .loader import train_stream
from .shards import read_manifest
from .timesteps import create_timestep_sampler
from .unet import count_parameters

LogFn = Callable[[dict[str, float], int], None]


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    parameters: int
    images_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)


def train(params: Params, shard_dir: Path, model_path: Path, log: LogFn | None = None,
          accelerator: Accelerator | None = None) -> TrainResult:
    """Train the network of ``params`` on the shards and write the EMA weights to ``model_path`` (rank 0)."""
    accelerator = accelerator or Accelerator()
    manifest = read_manifest(shard_dir)
    channels = manifest["splits"]["train"]["shape"][2]
    if manifest["splits"]["train"]["shape"][0] != params.data.resolution:
        raise ValueError(
            f"data.resolution: {params.data.resolution} differs from the shards' "
            f"{manifest['splits']['train']['shape'][0]}; rerun the prepare stage"
        )
    cfg = params.train
    torch.manual_seed(params.seed * 7919 + accelerator.process_index)
    diffusion = build_diffusion(params)
    timestep_sampler = create_timestep_sampler(params.timestep_sampler, diffusion.num_timesteps)
    model = build_model(params, channels)
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    ema.model.to(accelerator.device)
    # Each rank resamples shards with its own seed, so the loader is not passed through accelerator.prepare.
    batches = train_stream(shard_dir, cfg.batch_size, params.seed, accelerator.process_index,
                           cfg.random_flip, cfg.shuffle_buffer)
    history: list[dict[str, float]] = []
    window_loss, window_mse, window_n, window_start = 0.0, 0.0, 0, time.perf_counter()
    images_per_second, loss_value = 0.0, math.nan
    bar = tqdm(range(1, cfg.steps + 1), desc="train", unit="step", disable=not accelerator.is_main_process,
               mininterval=2.0)
    for step in bar:
        x0, _ = next(batches)
        x0 = x0.to(accelerator.device)
        t, weights = timestep_sampler.sample(x0.shape[0], x0.device)
        terms = diffusion.training_losses(model, x0, t)
        loss = (terms["loss"] * weights).mean()
        # Every process records every process's (t, loss), so the loss-aware history stays identical across ranks.
        timestep_sampler.update(*accelerator.gather((t, terms["loss"].detach())))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train: loss is {loss.item()} at step {step}; stopping (no weights written)")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = (
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip else torch.tensor(0.0)
        )
        optimizer.step()
        scheduler.step()
        ema.update(accelerator.unwrap_model(model))
        window_loss += loss.item()
        window_mse += terms["mse"].mean().item()
        window_n += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            elapsed = time.perf_counter() - window_start
            images_per_second = window_n * x0.shape[0] * accelerator.num_processes / max(elapsed, 1e-9)
            loss_value = window_loss / window_n
            record = {
                "step": step,
                "loss": loss_value,
                "mse": window_mse / window_n,
                "grad_norm": float(grad_norm),
                "lr": scheduler.get_last_lr()[0],
                "images_per_second": images_per_second,
            }
            history.append(record)
            bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{images_per_second:.0f}")
            if log is not None and accelerator.is_main_process:
                log({k: v for k, v in record.items() if k != "step"}, step)
            window_loss, window_mse, window_n, window_start = 0.0, 0.0, 0, time.perf_counter()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model(ema.model, model_path, ema_decay=str(cfg.ema_decay), steps=str(cfg.steps))
    return TrainResult(
        steps=cfg.steps,
        final_loss=loss_value,
        parameters=count_parameters(ema.model),
        images_per_second=images_per_second,
        history=history,
    )
