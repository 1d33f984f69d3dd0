"""The training loop (DDPM Algorithm 1) under Accelerate: Adam, linear warm-up, gradient clipping, EMA,
resumable checkpoints."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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
from .train_state import checkpoint_fingerprint, list_checkpoints, load_checkpoint, save_checkpoint
from .unet import count_parameters

LogFn = Callable[[dict[str, float], int], None]


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    parameters: int
    images_per_second: float
    resumed_from: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def record_losses(accelerator: Accelerator, sampler, t: torch.Tensor, losses: torch.Tensor) -> None:
    """Give the timestep sampler every process's (t, loss), so its history is identical on all ranks."""
    sampler.update(*accelerator.gather((t, losses.detach())))


class Telemetry:
    """Running means between log points: loss, its parts, and the loss per quartile of t (as iDDPM logs it)."""

    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps, self.start = 0, time.perf_counter()

    def _add(self, key: str, total: float, count: int) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + total
        self.counts[key] = self.counts.get(key, 0) + count

    def add(self, loss: float, terms: dict[str, torch.Tensor], t: torch.Tensor) -> None:
        self.steps += 1
        self._add("loss", loss, 1)
        for name in ("mse", "vb"):
            if name in terms:
                self._add(name, terms[name].detach().sum().item(), terms[name].numel())
        quartile = (t * 4 // self.num_timesteps).tolist()
        for q, value in zip(quartile, terms["loss"].detach().tolist(), strict=True):
            self._add(f"loss_q{q}", value, 1)

    def summary(self, images_per_step: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {k: self.sums[k] / self.counts[k] for k in sorted(self.sums)}
        out["images_per_second"] = self.steps * images_per_step / elapsed
        if torch.cuda.is_available():
            out["gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return out


def training_fingerprint(params: Params) -> str:
    """What a checkpoint must share with the current params to be resumed (the step count may grow)."""
    raw = params.model_dump(mode="json", exclude={"profile", "sample", "fid", "evaluate"})
    for key in ("steps", "log_every", "keep_checkpoints"):
        raw["train"].pop(key)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


def segment_seed(seed: int, rank: int, segment: int) -> int:
    """The seed of one checkpoint interval on one rank: resuming at a boundary replays the same randomness."""
    return int(np.random.SeedSequence([seed, rank, segment]).generate_state(1)[0])


def train(params: Params, shard_dir: Path, model_path: Path, checkpoint_dir: Path, log: LogFn | None = None,
          accelerator: Accelerator | None = None) -> TrainResult:
    """Train the network of ``params`` on the shards and write the EMA weights to ``model_path`` (rank 0).

    Resumes from the newest checkpoint in ``checkpoint_dir`` made with the same training params; checkpoints of
    other params are removed. Data order and random draws are reseeded at every checkpoint boundary, so an
    interrupted and resumed run ends with the same weights as an uninterrupted one.
    """
    accelerator = accelerator or Accelerator()
    manifest = read_manifest(shard_dir)
    channels = manifest["splits"]["train"]["shape"][2]
    if manifest["splits"]["train"]["shape"][0] != params.data.resolution:
        raise ValueError(
            f"data.resolution: {params.data.resolution} differs from the shards' "
            f"{manifest['splits']['train']['shape'][0]}; rerun the prepare stage"
        )
    cfg, rank = params.train, accelerator.process_index
    torch.manual_seed(int(np.random.SeedSequence([params.seed]).generate_state(1)[0]))  # same init on every rank
    diffusion = build_diffusion(params)
    timestep_sampler = create_timestep_sampler(params.timestep_sampler, diffusion.num_timesteps)
    model = build_model(params, channels)
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    )
    fingerprint = training_fingerprint(params)
    start, history = 0, []
    checkpoints = list_checkpoints(checkpoint_dir)
    if checkpoints and checkpoint_fingerprint(checkpoints[-1].path) != fingerprint:
        accelerator.print(f"train: {checkpoint_dir} holds checkpoints of other training params; starting afresh")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(checkpoint_dir)
        checkpoints = []
    if checkpoints:
        state = load_checkpoint(checkpoints[-1].path, model, ema.model, optimizer, scheduler)
        timestep_sampler.load_state_dict(state["sampler_state"])
        start, history = min(state["step"], cfg.steps), state["history"]
        accelerator.print(f"train: resuming from {checkpoints[-1].path} (step {state['step']})")
    model, optimizer = accelerator.prepare(model, optimizer)
    ema.model.to(accelerator.device)

    telemetry = Telemetry(diffusion.num_timesteps)
    images_per_second = history[-1]["images_per_second"] if history else 0.0
    loss_value = history[-1]["loss"] if history else math.nan
    batches = None
    bar = tqdm(range(start + 1, cfg.steps + 1), desc="train", unit="step", initial=start, total=cfg.steps,
               disable=not accelerator.is_main_process, mininterval=2.0)
    for step in bar:
        if batches is None or (step - 1) % cfg.checkpoint_every == 0:
            segment = (step - 1) // cfg.checkpoint_every
            torch.manual_seed(segment_seed(params.seed, rank, segment))
            # Each rank resamples shards with its own seed, so the loader is not passed through accelerator.prepare.
            batches = train_stream(shard_dir, cfg.batch_size, segment_seed(params.seed, rank, segment), rank,
                                   accelerator.num_processes, cfg.random_flip, cfg.shuffle_buffer)
        x0, _, _ = next(batches)
        x0 = x0.to(accelerator.device)
        t, weights = timestep_sampler.sample(x0.shape[0], x0.device)
        terms = diffusion.training_losses(model, x0, t)
        loss = (terms["loss"] * weights).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"train: loss is {loss.item()} at step {step}; stopping (the last checkpoint in {checkpoint_dir} "
                "is kept)"
            )
        record_losses(accelerator, timestep_sampler, t, terms["loss"])
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = (
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip else torch.tensor(0.0)
        )
        optimizer.step()
        scheduler.step()
        ema.update(accelerator.unwrap_model(model))
        telemetry.add(loss.item(), terms, t)
        if step % cfg.log_every == 0 or step == cfg.steps:
            summary = telemetry.summary(x0.shape[0] * accelerator.num_processes)
            loss_value, images_per_second = summary["loss"], summary["images_per_second"]
            record = {"step": step, "loss": loss_value, "mse": summary["mse"], "grad_norm": float(grad_norm),
                      "lr": scheduler.get_last_lr()[0], "images_per_second": images_per_second}
            history.append(record)
            bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{images_per_second:.0f}")
            if log is not None and accelerator.is_main_process:
                log(summary | {"grad_norm": float(grad_norm), "lr": record["lr"]}, step)
            telemetry.reset()
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(checkpoint_dir, step, fingerprint, accelerator.unwrap_model(model), ema.model,
                                optimizer, scheduler, timestep_sampler.state_dict(), history, cfg.keep_checkpoints)
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
    )
