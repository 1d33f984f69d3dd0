"""The training loop (DDPM Algorithm 1) under Accelerate: Adam, linear warm-up, gradient clipping and
accumulation, mixed precision, EMA, resumable checkpoints, telemetry."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import parse_flag_from_env

from ddpm.config import Params, Precision
from ddpm.core.images import image_grid, to_model_range
from ddpm.core.unet import count_parameters
from ddpm.data.loader import train_stream
from ddpm.data.shard_cache import node_cache
from ddpm.data.shards import read_manifest, split_identity
from ddpm.data.shared_memory import check_shared_memory
from ddpm.device_defaults import concrete, resolve_auto
from ddpm.factory import build_diffusion, build_model
from ddpm.peers import wait_for_all
from ddpm.precision import IEEE, TF32, set_fp32_precision
from ddpm.progress import progress
from ddpm.storage.files import exclusive_lock
from ddpm.storage.model_files import save_model
from ddpm.training.determinism import deterministic_algorithms
from ddpm.training.ema import EMA
from ddpm.training.stop import Interrupted, StopRequest
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
    cuda = torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU")  # where Accelerate puts it
    precision = Precision(concrete("train.mixed_precision", params.train.mixed_precision, "cuda" if cuda else "cpu"))
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
    params, _ = resolve_auto(params, accelerator.device.type)  # stages pass resolved params; tests may not
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
        wait_for_all()  # the main process may have waited hours for the lock: no collective would outlast that
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
    loop = TrainLoop(params, shard_dir, folder, fingerprint, accelerator, log, log_image)
    try:
        loop.run_loop()
    finally:
        loop.close()
    return loop.finish(model_path)


class TrainLoop:
    """One training run in its run folder, in the manner of improved-diffusion's TrainLoop: ``__init__`` builds the
    network, EMA, optimizer and schedule (resuming from the folder's newest checkpoint); ``run_loop`` runs
    ``run_step`` (a batch per micro-batch, one optimization step, the EMA, the timestep sampler's losses) for each
    step, then ``log_step`` and ``save`` at their intervals; ``finish`` writes the EMA weights."""

    def __init__(
        self,
        params: Params,
        shard_dir: Path,
        folder: Path,
        fingerprint: str,
        accelerator: Accelerator,
        log: LogFn | None = None,
        log_image: ImageLogFn | None = None,
    ):
        self.params, self.cfg, self.shard_dir = params, params.train, shard_dir
        self.folder, self.fingerprint, self.accelerator = folder, fingerprint, accelerator
        self.log, self.log_image = log, log_image
        self.channels = self._channels()
        self.micro = self.cfg.micro_batch(accelerator.num_processes)
        res = params.data.resolution
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by accelerate launch (torchrun)
        check_shared_memory(self.cfg.loader_workers, self.micro * self.channels * res * res, local_processes)
        self.rank, self.device = accelerator.process_index, accelerator.device
        torch.manual_seed(int(np.random.SeedSequence([params.seed]).generate_state(1)[0]))  # same init on every rank
        self._build()
        self.resume_rng: dict[str, torch.Tensor] = {}  # generator states of a checkpoint saved between boundaries
        self.start, self.history = self._restore()
        self._prepare()
        self.telemetry = Telemetry(self.diffusion.num_timesteps)
        self.divergence = Divergence(self.device, loss_scaled=accelerator.scaler is not None)
        self.images_per_second = self.history[-1]["images_per_second"] if self.history else 0.0
        self.loss_value = self.history[-1]["loss"] if self.history else math.nan
        self.batches: Generator | None = None
        self.bar = progress("train", self.cfg.steps, "step", initial=self.start, enabled=accelerator.is_main_process)

    def _channels(self) -> int:
        """The shards' channel count, once their resolution is the params' (else one line naming the key)."""
        manifest = read_manifest(self.shard_dir, self.params.data.shards_url)
        shape = manifest["splits"]["train"]["shape"]
        if shape[0] != self.params.data.resolution:
            raise ValueError(
                f"data.resolution: {self.params.data.resolution} differs from the shards' {shape[0]}; "
                "rerun the prepare stage"
            )
        return int(shape[2])

    def _build(self) -> None:
        """The diffusion, timestep sampler, network, EMA (float32, outside DDP), optimizer and warm-up schedule."""
        cfg = self.cfg
        self.diffusion = build_diffusion(self.params)
        self.timesteps = make_timesteps(self.params.timestep_sampler, self.diffusion.num_timesteps)
        self.model = build_model(self.params, self.channels)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # The EMA in the network's layout: with equal strides the foreach lerp is one kernel over all tensors, not
        # one per tensor whose layout differs (saved files are contiguous either way).
        self.model.to(memory_format=self.memory_format)
        self.ema.model.to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
        )

    def _restore(self) -> tuple[int, list[dict[str, float]]]:
        """The step to start from and the logged history: those of the folder's newest checkpoint at or below
        ``train.steps`` (a checkpoint beyond it holds weights trained for more steps than asked: it stays, unused),
        or 0 and none."""
        checkpoints = list_checkpoints(self.folder)
        usable = [c for c in checkpoints if c.step <= self.cfg.steps]
        beyond = (
            f"; the checkpoints beyond train.steps = {self.cfg.steps} stay" if len(usable) < len(checkpoints) else ""
        )
        if not usable:
            if self.accelerator.is_main_process:
                print(fresh_start_note(self.folder, self.params) + beyond, flush=True)
            return 0, []
        newest = usable[-1].path
        state = load_checkpoint(newest, self.model, self.ema.model, self.optimizer, self.scheduler)
        match_layout(self.optimizer)
        self.timesteps.load_state_dict(state["sampler_state"])
        self.resume_rng = state["rng"]
        self.accelerator.print(f"train: resuming from {newest} (step {state['step']}){beyond}")
        return state["step"], state["history"]

    def _prepare(self) -> None:
        """Activation checkpointing, compilation and Accelerate's wrapping of the network and optimizer."""
        self.model.gradient_checkpointing = self.cfg.activation_checkpointing
        if self.cfg.compile:
            self.model.compile()  # in place: parameter names and state_dict keys stay as they are
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.ema.model.to(self.device)
        self.shape = (self.channels, self.params.data.resolution, self.params.data.resolution)

    def run_loop(self) -> None:
        """Every step from the resumed one to ``train.steps``: a step, then logs, sample grids and checkpoints
        at their intervals."""
        cfg = self.cfg
        if self.start == 0:
            self.log_ema_grid(0)  # the initial weights' samples: the series starts from noise
            self.log_warmup()
        with StopRequest() as stop:
            for step in range(self.start + 1, cfg.steps + 1):
                grad_norm = self.run_step(step)
                logged = step % cfg.log_every == 0 or step == cfg.steps
                if logged:
                    self.log_step(step, grad_norm)
                if cfg.sample_every and step % cfg.sample_every == 0:
                    self.log_ema_grid(step)
                self.bar.update(1)
                boundary = step % cfg.checkpoint_every == 0 or step == cfg.steps
                if boundary:
                    self.save(step)
                if step < cfg.steps and self._stop_here(stop, logged):
                    if not boundary:
                        self.save(step, exact=True)
                    raise Interrupted(
                        f"stopped by {stop.received.name if stop.received else 'another process'} at step {step}; "
                        f"checkpoint {self.folder}/step-{step:09d} saved: rerun the stage to resume from it"
                    )

    def _stop_here(self, stop: StopRequest, logged: bool) -> bool:
        """Whether to stop after this step: as asked, alone; with other processes, at a logging step, where all
        agree (any one asked) in the collective the log makes anyway, so no step pays for an extra one."""
        if self.accelerator.num_processes == 1:
            return stop.requested
        if not logged:
            return False
        flag = torch.tensor(float(stop.requested), device=self.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)

    def _next_batches(self, step: int) -> Generator:
        """The batch stream, reseeded at each checkpoint boundary (a resumed run replays the same data)."""
        if self.batches is None or (step - 1) % self.cfg.checkpoint_every == 0:
            segment = (step - 1) // self.cfg.checkpoint_every
            torch.manual_seed(segment_seed(self.params.seed, self.rank, segment))
            if self.batches is not None:
                self.batches.close()  # its workers end now
            # Each rank goes through all shards with its own seed, so the loader is not passed through
            # accelerator.prepare.
            batches = train_stream(
                self.shard_dir,
                self.micro,
                segment_seed(self.params.seed, self.rank, segment),
                self.cfg.random_flip,
                self.cfg.shuffle_buffer,
                self.params.data.verify,
                self.params.data.shards_url,
                workers=self.cfg.loader_workers,
                pin_memory=self.device.type == "cuda",
                cache=node_cache(),
            )
            self.batches = batches
            if self.resume_rng:  # a checkpoint between boundaries: on from exactly where it stopped
                self._resume_within_segment(step)
        return self.batches

    def _resume_within_segment(self, step: int) -> None:
        """Skip the segment's batches the steps before ``step`` took and put back the generators' states saved at
        that step, so the run goes on as if it had never stopped."""
        assert self.batches is not None
        for _ in range(((step - 1) % self.cfg.checkpoint_every) * self.cfg.grad_accumulation):
            next(self.batches)
        cpu, cuda = self.resume_rng.get(f"rng.{self.rank}.cpu"), self.resume_rng.get(f"rng.{self.rank}.cuda")
        if cpu is None:
            self.accelerator.print(
                "train: the checkpoint holds no generator state for this process (another process count?): "
                "the run goes on, not bit for bit as an uninterrupted one"
            )
        else:
            torch.set_rng_state(cpu)
            if cuda is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda, self.device)
        self.resume_rng = {}

    def run_step(self, step: int) -> torch.Tensor:
        """One optimizer step (DDPM Algorithm 1 over ``train.grad_accumulation`` micro-batches), the EMA and the
        timestep sampler's losses; a non-finite loss is named at the next check. Returns the gradient norm."""
        cfg, accelerator = self.cfg, self.accelerator
        batches = self._next_batches(step)
        micro_batches = []
        for _ in range(cfg.grad_accumulation):
            x0 = to_model_range(to_device(next(batches)[0], self.device)).contiguous(memory_format=self.memory_format)
            micro_batches.append(MicroBatch(x0, *self.timesteps.draw(x0.shape[0], self.device)))
        loss, terms_list, grad_norm = optimization_step(
            accelerator, self.model, self.diffusion, self.optimizer, micro_batches, cfg.grad_clip
        )
        self.divergence.add(step, loss, grad_norm)
        if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or step == cfg.steps:
            try:
                self.divergence.check(step, lambda v: accelerator.reduce(v, "sum"))
            except FloatingPointError as err:
                raise FloatingPointError(f"{err}; stopping (the last checkpoint in {self.folder} is kept)") from None
        self.scheduler.step()
        self.ema.update(accelerator.unwrap_model(self.model))
        t_all = torch.cat([mb.t for mb in micro_batches])
        terms = {k: torch.cat([tm[k].detach().float() for tm in terms_list]) for k in terms_list[0]}
        record_losses(accelerator, self.timesteps, t_all, terms["loss"])
        self.telemetry.add(loss, terms, t_all)
        return grad_norm

    def log_step(self, step: int, grad_norm: torch.Tensor) -> None:
        """The telemetry since the last log, summed over processes: into the history, the bar and ``log``."""
        summary = self.telemetry.summary(self.cfg.batch_size, lambda v: self.accelerator.reduce(v, "sum"))
        self.loss_value, self.images_per_second = summary["loss"], summary["images_per_second"]
        lr = float(self.scheduler.get_last_lr()[0])
        self.history.append(
            {
                "step": step,
                "loss": self.loss_value,
                "mse": summary["mse"],
                "grad_norm": float(grad_norm),
                "lr": lr,
                "images_per_second": self.images_per_second,
            }
        )
        self.bar.set_postfix(loss=f"{self.loss_value:.4f}", img_s=f"{self.images_per_second:.0f}")
        if self.log is not None and self.accelerator.is_main_process:
            self.log(summary | {"grad_norm": float(grad_norm), "lr": lr}, step)
        self.telemetry.reset()

    def log_warmup(self) -> None:
        """The learning rate over the warm-up steps before the first logged step (at most 50 points), logged as
        ``log_step`` logs it (after the step's scheduler update): a warm-up shorter than ``train.log_every`` would
        otherwise leave the ``lr`` series constant, drawn as a flat line in MLflow's charts."""
        cfg = self.cfg
        if self.log is None or not self.accelerator.is_main_process or not cfg.warmup:
            return
        factor = self.scheduler.lr_lambdas[0]  # the lr after k scheduler steps: train.lr × factor(k)
        ramp = range(1, min(cfg.warmup, cfg.log_every, cfg.steps))  # warm-up steps before the first logged one
        for step in ramp[:: max(1, -(-len(ramp) // 50))]:
            self.log({"lr": cfg.lr * factor(step)}, step)

    def log_ema_grid(self, step: int) -> None:
        """A grid of the EMA network's samples, to ``log_image`` (main process, when ``train.sample_every``)."""
        cfg = self.cfg
        if cfg.sample_every and self.accelerator.is_main_process and self.log_image:
            images = ema_sample_grid(
                self.diffusion,
                self.ema.model,
                cfg.sample_images,
                self.shape,
                cfg.sample_steps,
                self.params.seed,
                self.device,
            )
            self.log_image(image_grid(images, cfg.sample_images), "ema_samples", step)

    def save(self, step: int, exact: bool = False) -> None:
        """A checkpoint of ``step`` in the run folder (main process; older ones beyond ``keep_checkpoints`` go);
        ``exact``: with every process's generator states, for a step between checkpoint boundaries."""
        self.accelerator.wait_for_everyone()
        rng = self._generator_states() if exact else None
        if self.accelerator.is_main_process:
            save_checkpoint(
                self.folder,
                step,
                self.fingerprint,
                self.accelerator.unwrap_model(self.model),
                self.ema.model,
                self.optimizer,
                self.scheduler,
                self.timesteps.state_dict(),
                self.history,
                self.cfg.keep_checkpoints,
                rng,
            )

    def _generator_states(self) -> dict[str, torch.Tensor]:
        """Every process's CPU (and CUDA) generator state, keyed ``rng.<rank>.cpu`` / ``.cuda``, on every process."""
        mine = {f"rng.{self.rank}.cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            mine[f"rng.{self.rank}.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.accelerator.num_processes == 1:
            return mine
        every: list[dict[str, torch.Tensor]] = [{}] * self.accelerator.num_processes
        torch.distributed.all_gather_object(every, mine)
        return {k: v for part in every for k, v in part.items()}

    def close(self) -> None:
        """End the progress bar and the batch stream's workers."""
        self.bar.close()
        if self.batches is not None:
            self.batches.close()

    def finish(self, model_path: Path) -> TrainResult:
        """Write the EMA weights to ``model_path`` (main process) and say what was trained."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_model(self.ema.model, model_path, ema_decay=str(self.cfg.ema_decay), steps=str(self.cfg.steps))
        return TrainResult(
            steps=self.cfg.steps,
            final_loss=self.loss_value,
            parameters=count_parameters(self.ema.model),
            images_per_second=self.images_per_second,
            resumed_from=self.start,
            history=self.history,
            fingerprint=self.fingerprint,
            checkpoints=self.folder,
        )
