"""The params.yaml schema: validated once, at the start of every stage, before any work.

Every key is required: the defaults live in one place, ``conf/`` (``conf/config.yaml`` and a profile), from which
``dvc exp run`` composes params.yaml (``compose_params`` does the same in Python). Rules about a value live with the
code that owns it (``ddpm.core.options``, ``schedules``, ``spacing``); the schema calls them, and imports no torch.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ddpm.core.options import (
    ODE_SOLVERS,
    DecoderCDF,
    Embedding,
    End,
    Eta,
    InferencePrecision,
    Inversion,
    LossType,
    MeanType,
    OptionError,
    Padding,
    QKVLayout,
    Sampler,
    TimeSpacing,
    TimestepSamplerType,
    VarType,
    check_eta,
    check_unet_geometry,
    check_variance_trainable,
    solver_conventions,
)
from ddpm.core.schedules import Schedule, get_beta_schedule
from ddpm.core.spacing import Skip, ddim_timesteps, space_timesteps

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested params as the dotted keys DVC and MLflow name them: {"train": {"lr": 1}} → {"train.lr": 1}."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def experiment_name(dataset: str) -> str:
    """The MLflow experiment, and the registered model, of a dataset's runs: ``ddpm-<dataset>``."""
    return f"ddpm-{dataset}"


class ParamsError(ValueError):
    """A one-line error naming the offending params key."""


class Dataset(StrEnum):
    """The dataset sources (``ddpm.data.sources``) that params can choose."""

    DIGITS = "digits"  # scikit-learn's 8×8 digits, bundled with scikit-learn (the tiny profile)
    CIFAR10 = "cifar10"  # official pickle tarball (downloaded or local) or a tar of train/ and test/ class folders
    LSUN_CHURCH = "lsun_church"  # LSUN lmdb exports
    LSUN_BEDROOM = "lsun_bedroom"
    LSUN_CAT = "lsun_cat"
    CELEBAHQ = "celebahq"  # a folder (or tar) of 256×256 images
    FOLDER = "folder"  # any folder or tar of images, optionally one sub-folder per class


class ShardCheck(StrEnum):
    """When a reader checks a shard against the manifest's sha256 and size (``ddpm.data.tar_reader``)."""

    BEFORE = "before"  # hash the whole shard before decoding any of it (one shard held in memory)
    STREAMING = "streaming"  # hash as members are read; a mismatch stops the reader at the shard's end


class Precision(StrEnum):
    """Mixed precision of training (the Accelerator's ``mixed_precision``)."""

    AUTO = "auto"  # bf16 on a CUDA GPU, no elsewhere (``ddpm.device_defaults``)
    NO = "no"  # IEEE float32 (also on GPUs, where PyTorch would run convolutions in TF32)
    TF32 = "tf32"  # float32 with TensorFloat-32 matmuls and convolutions on Ampere+ GPUs (a 10-bit mantissa)
    BF16 = "bf16"  # bfloat16 autocast (CPU and Ampere+ GPUs)
    FP16 = "fp16"  # float16 autocast with loss scaling (CUDA only)


def _toggle(value):
    """A boolean setting that also takes ``auto`` (``ddpm.device_defaults`` resolves it on the stage's device)."""
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError("Input should be true, false or auto")


Toggle = Annotated[bool | Literal["auto"], BeforeValidator(_toggle)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


def _owned(key: str, check: Callable, *args):
    """Run the owning code's ``check``; its OptionError is re-keyed as the params key ``key`` (none for a field
    validator: pydantic names the field)."""
    try:
        return check(*args)
    except OptionError as err:
        raise ValueError(f"{key}: {err.reason}" if key else err.reason) from None


def _shards_url(url: str | None) -> str | None:
    """A URL of a folder holding manifest.json and the shards: http(s)://, or a scheme fsspec reads (s3://, gs://)."""
    if url is None:
        return None
    if not isinstance(url, str) or "://" not in url or url.split("://", 1)[0].lower() in ("", "file"):
        raise ValueError(f"{url!r} is not a URL (http(s)://host/folder, or s3://, gs:// through fsspec)")
    return url


class DataParams(_Section):
    source: str | None  # a local copy: file, folder or lmdb (cifar10: the official tarball or class folders)
    download: bool  # cifar10 without source: fetch url, resumable, MD5-checked
    url: str
    md5: str
    resolution: PositiveInt
    shard_size: PositiveInt  # images per shard
    test_size: PositiveInt  # held-out test images (digits, lsun_*, celebahq, folder; cifar10 has its own)
    limit: PositiveInt | None  # at most this many images per split
    skip_corrupt: bool  # leave out (and count) undecodable images instead of failing
    class_folders: bool  # folder: the first sub-folder names the class
    verify: ShardCheck  # every reader checks each shard it opens against the manifest: before | streaming
    shards_url: Annotated[str | None, BeforeValidator(_shards_url)]  # train reads the shards from this URL


class ImportFormat(StrEnum):
    """The layouts of released checkpoints (``ddpm.importers``); ``auto`` tells them apart by their keys."""

    AUTO = "auto"
    DDPM = "ddpm"  # ermongroup/ddim's port of DDPM's TensorFlow U-Net (*.ckpt)
    IDDPM = "iddpm"  # openai/improved-diffusion (*.pt)
    DIFFUSERS = "diffusers"  # a diffusers UNet2DModel folder


class ImportParams(_Section):
    path: str | None  # a released checkpoint: the train stage imports it instead of training (null: train)
    format: ImportFormat


class ModelParams(_Section):
    ch: PositiveInt
    ch_mult: Annotated[list[PositiveInt], Field(min_length=1)]
    num_res_blocks: PositiveInt
    attn_resolutions: list[PositiveInt]
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)]
    num_heads: PositiveInt
    scale_shift_norm: bool
    resblock_updown: bool
    norm_eps: Annotated[float, Field(gt=0.0)]  # GroupNorm ε: 1e-6 (DDPM), 1e-5 (iDDPM)
    downsample_padding: Padding  # same (DDPM, TensorFlow) | symmetric (iDDPM)
    time_embedding: Embedding  # ddpm ([sin, cos], /(half − 1)) | iddpm ([cos, sin], /half)
    rescale_timesteps: bool  # the network sees t · 1000 / T (iDDPM's scripts) instead of t
    qkv_layout: QKVLayout  # qkv (DDPM) | heads (iDDPM's fused per-head q, k, v)
    import_from: ImportParams


class TrainParams(_Section):
    lr: Annotated[float, Field(gt=0)]
    batch_size: PositiveInt  # the global batch, over all processes and accumulation steps
    steps: PositiveInt
    warmup: NonNegativeInt
    grad_clip: Annotated[float, Field(gt=0)] | None
    ema_decay: Annotated[float, Field(ge=0.0, lt=1.0)]
    random_flip: bool
    log_every: PositiveInt
    shuffle_buffer: PositiveInt  # images shuffled together: shards taken in groups of at least this many
    loader_workers: NonNegativeInt  # DataLoader processes decoding the training batches (0: the training process)
    checkpoint_every: PositiveInt  # steps between resumable checkpoints (also reseeds the data stream)
    keep_checkpoints: PositiveInt
    grad_accumulation: PositiveInt  # micro-batches per optimizer step
    mixed_precision: Precision
    activation_checkpointing: bool  # recompute U-Net blocks in backward: less memory, ~30% more compute
    compile: Toggle  # torch.compile the network; auto: on CUDA (``ddpm.device_defaults``)
    channels_last: bool  # NHWC memory format (faster convolutions on tensor cores)
    deterministic: bool  # deterministic GPU kernels: bit-exact resumes on a GPU, slower (training/determinism.py)
    sample_every: NonNegativeInt  # steps between EMA sample grids logged to MLflow (0: none)
    sample_images: PositiveInt  # images in that grid
    sample_steps: PositiveInt  # DDIM (η = 0) steps for that grid

    def micro_batch(self, num_processes: int) -> int:
        """Images per micro-batch on one process: the global batch split over processes × accumulation steps."""
        parts = num_processes * self.grad_accumulation
        if self.batch_size % parts:
            raise ValueError(
                f"train.batch_size: {self.batch_size} does not split over {num_processes} process(es) × "
                f"{self.grad_accumulation} accumulation step(s); use a multiple of {parts}"
            )
        return self.batch_size // parts


def _eta(value) -> Eta:
    return _owned("", check_eta, value)


class SampleParams(_Section):
    num_samples: PositiveInt
    sampler: Sampler
    steps: PositiveInt | None  # None: all T steps; an ODE solver's budget of network calls
    solver_spacing: TimeSpacing  # the ODE solvers' grid
    solver_end: End  # where the ODE solvers stop: step 0, or clean (x̂0)
    respacing: str | None  # ancestral only: iDDPM section counts such as "10,10,10" or "ddim50"
    eta: Annotated[Eta, BeforeValidator(_eta)]  # DDIM η in [0, 1], or DDIM Table 1's σ̂
    skip: Skip
    clip_denoised: bool | None  # clip x̂0 to [-1, 1]; None: as the papers' code (ancestral and σ̂ yes, DDIM η no)
    batch_size: PositiveInt
    chunk_size: PositiveInt  # images per sample file (the unit of resumption and of work per process)
    grid_size: PositiveInt
    precision: InferencePrecision  # the network in fp32, or under bf16 autocast (also the DDIM table's cells)
    compile: Toggle  # torch.compile (CUDA graphs on a GPU), also the FID cells; auto: on CUDA

    def sampler_options(self) -> dict:
        """The keywords of ``ddpm.core.sampling.sample`` these params choose."""
        return {
            "sampler": self.sampler,
            "steps": self.steps,
            "eta": self.eta,
            "skip": self.skip,
            "respacing": self.respacing,
            "clip_denoised": self.clip_denoised,
            "spacing": self.solver_spacing,
            "end": self.solver_end,
        }


class FidParams(_Section):
    max_images: PositiveInt | None  # None: the whole split
    batch_size: PositiveInt
    feature_images: PositiveInt  # reference features kept for KID and precision/recall
    kid_subset_size: PositiveInt


class EvaluateParams(_Section):
    fid: bool
    isc: bool
    isc_weights: str | None  # torch-fidelity's Inception weights (IS needs them): auto (cached, else fetched), a
    #                          file, or null (the torch hub cache only)
    nll_images: PositiveInt
    nll_batch_size: PositiveInt
    nll_precision: InferencePrecision  # the network in fp32 (the papers' tables), tf32, bf16 autocast, or auto
    compile: Toggle  # torch.compile the network for the bound; auto: on CUDA


class FiguresParams(_Section):
    images: PositiveInt  # progressive generation: rows (one reverse chain each)
    frames: Annotated[int, Field(ge=2)]  # progressive generation: x̂0 snapshots per chain
    latent_fractions: Annotated[list[Annotated[float, Field(gt=0.0, le=1.0)]], Field(min_length=1)]
    per_latent: PositiveInt  # samples from each shared x_t
    interpolation_points: Annotated[int, Field(ge=2)]
    ddim_steps: PositiveInt  # DDIM slerp interpolation steps
    reconstruction_images: PositiveInt  # test images for DDIM Table 2
    reconstruction_steps: Annotated[list[PositiveInt], Field(min_length=1)]  # S > T are left out of the table
    inversion: Inversion  # DDIM encoder: euler (DDIM eq. 14, ε_θ at the source step) | target


class DdimTableParams(_Section):
    """DDIM Table 1: FID for every S × η (the ddim_fid stage is a DVC matrix over these lists)."""

    steps: Annotated[list[PositiveInt], Field(min_length=1)]  # S > T: not applicable
    etas: Annotated[list[Annotated[Eta, BeforeValidator(_eta)]], Field(min_length=1)]
    skip: Skip  # DDIM App. D.2: quad for CIFAR-10, uniform for the others
    clip_denoised: bool | None  # None: as DDIM's code (η: no, σ̂: yes)
    num_samples: PositiveInt  # per cell (DDIM used 50k)


class SolverTableParams(_Section):
    """FID against NFE: one FID per sampler × NFE (the solver_fid stage is a DVC matrix over these lists)."""

    samplers: Annotated[list[Sampler], Field(min_length=1)]
    nfe: Annotated[list[PositiveInt], Field(min_length=1)]  # ddim and ancestral: NFE > T is not applicable
    spacing: TimeSpacing
    end: End
    num_samples: PositiveInt  # per cell


class Params(_Section):
    profile: str
    dataset: Dataset
    schedule: Schedule
    timesteps: PositiveInt
    objective: LossType
    mean_type: MeanType
    variance: VarType
    hybrid_lambda: Annotated[float, Field(ge=0.0)]
    decoder_cdf: DecoderCDF
    timestep_sampler: TimestepSamplerType
    seed: NonNegativeInt
    launcher: Annotated[str, Field(min_length=1)]  # how dvc.yaml starts train and sample
    data: DataParams
    model: ModelParams
    train: TrainParams
    sample: SampleParams
    fid: FidParams
    evaluate: EvaluateParams
    figures: FiguresParams
    ddim_table: DdimTableParams
    solver_table: SolverTableParams

    @model_validator(mode="after")
    def _consistent(self):
        """The checks across sections, in this order (the first failing one is the line the user sees)."""
        self._check_process()
        self._check_step_lists()
        self._check_solvers()
        self._check_sampler_steps()
        self._check_unet()
        return self

    def _check_process(self) -> None:
        """The schedule reaches no β = 1 at T, a learned variance gets a gradient, the batch splits."""
        _owned("timesteps", get_beta_schedule, self.schedule, self.timesteps)
        _owned("variance", check_variance_trainable, self.variance, self.objective)
        self.train.micro_batch(1)

    def _check_step_lists(self) -> None:
        """Every DDIM sub-sequence the params name exists at T (a table's S > T is a cell marked not applicable)."""
        T = self.timesteps
        _owned("train.sample_steps", ddim_timesteps, T, self.train.sample_steps)
        _owned("figures.ddim_steps", ddim_timesteps, T, self.figures.ddim_steps)
        for steps in (s for s in self.ddim_table.steps if s <= T):
            _owned("ddim_table.skip", ddim_timesteps, T, steps, self.ddim_table.skip)
        if min(self.figures.reconstruction_steps) > T:
            raise ValueError(f"figures.reconstruction_steps: all exceed timesteps ({T})")

    def _check_solvers(self) -> None:
        """The ODE solvers named get a probability-flow ODE, each once, with a grid and end they accept."""
        sample, table = self.sample, self.solver_table
        solvers = [s for s in (sample.sampler, *table.samplers) if s in ODE_SOLVERS]
        if solvers and self.mean_type is MeanType.PREVIOUS_X:
            key = "sample.sampler" if sample.sampler in ODE_SOLVERS else "solver_table.samplers"
            raise ValueError(
                f"{key}: {solvers[0]} integrates the probability-flow ODE, which a μ̃-predicting "
                "model (mean_type mu) does not give; use ancestral"
            )
        if len(set(table.samplers)) < len(table.samplers):
            raise ValueError(f"solver_table.samplers: listed twice in {[str(s) for s in table.samplers]}")
        uses = [
            (sample.sampler, sample.solver_spacing, sample.solver_end, "sample.solver_spacing", "sample.solver_end")
        ]
        uses += [(s, table.spacing, table.end, "solver_table.spacing", "solver_table.end") for s in table.samplers]
        for sampler, spacing, end, spacing_key, end_key in uses:
            if sampler in ODE_SOLVERS:
                try:
                    solver_conventions(sampler, spacing, end, self.data.resolution)
                except OptionError as err:
                    raise ValueError(f"{spacing_key if err.key == 'spacing' else end_key}: {err.reason}") from None

    def _check_sampler_steps(self) -> None:
        """``sample.steps`` and ``sample.respacing`` as the sampler reads them: a solver's budget, DDIM's S, or
        the ancestral sampler's respacing."""
        sample, T = self.sample, self.timesteps
        if sample.sampler in ODE_SOLVERS:
            if sample.steps is None or sample.respacing is not None:
                raise ValueError(
                    f"sample.steps: {sample.sampler} needs its budget of network calls in sample.steps "
                    "(and no sample.respacing)"
                )
        elif sample.sampler is Sampler.DDIM:
            if sample.respacing is not None:
                raise ValueError("sample.respacing: applies to sampler 'ancestral'; DDIM uses sample.steps and skip")
            _owned("sample.steps", ddim_timesteps, T, sample.steps or T, sample.skip)
        elif sample.respacing is not None:
            _owned("sample.respacing", space_timesteps, T, sample.respacing)
        elif sample.steps is not None:
            _owned("sample.steps", space_timesteps, T, str(sample.steps))

    def _check_unet(self) -> None:
        """The U-Net's shape rules (``check_unet_geometry``), keyed as ``model.<key>``."""
        m = self.model
        try:
            check_unet_geometry(m.ch, m.ch_mult, self.data.resolution, m.attn_resolutions, m.num_heads)
        except OptionError as err:
            raise ValueError(f"model.{err.key}: {err.reason}") from None


def did_you_mean(word: object, choices: Sequence[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices`` to a mistyped key, value or command, or nothing."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _keys_beside(loc: tuple) -> list[str]:
    """The keys the schema allows where the key at ``loc`` was found (its siblings)."""
    section: type[BaseModel] = Params
    for part in loc[:-1]:
        field = section.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        section = annotation
    return list(section.model_fields)


def _format(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{loc}: unknown key{did_you_mean(first['loc'][-1], _keys_beside(first['loc']))}"
    if first["type"] in ("missing",):
        return f"{loc}: required key is missing"
    value = first.get("input")
    got = "" if isinstance(value, dict) or value is None or "(got " in msg else f" (got {value!r})"
    if first["type"] == "enum":  # "Input should be 'linear' or 'cosine'"
        got += did_you_mean(value, re.findall(r"'([^']*)'", str(first.get("ctx", {}).get("expected", ""))))
    return f"{loc}: {msg}{got}" if loc else f"{msg}"


def validate_params(raw: dict) -> Params:
    """Validate a params mapping; raise ParamsError with one line naming the key on any problem."""
    if not isinstance(raw, dict):
        raise ParamsError("params: the file must hold a mapping of keys")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(f"params.yaml: {_format(err)}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params: file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"params: {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    return validate_params(raw)


def check_named_files(params: Params, cwd: Path = Path(".")) -> None:
    """The files and folders params name exist and can be read (a relative path from the stage's working
    directory, which for queued and ``--temp`` experiments is a copy of the repository without git-ignored files);
    a ParamsError naming the first key that fails."""
    named = {
        "model.import_from.path": params.model.import_from.path,
        "data.source": params.data.source,
        "evaluate.isc_weights": params.evaluate.isc_weights,
    }
    for key, value in named.items():
        if value is None or key == "evaluate.isc_weights" and value == "auto":
            continue
        path = cwd / Path(value).expanduser()
        hint = (
            ""
            if Path(value).is_absolute()
            else " (relative to the stage's working directory: queued and --temp "
            "experiments run in a copy of the repository, give an absolute path)"
        )
        if not path.exists():
            raise ParamsError(f"params.yaml: {key}: {value} not found{hint}")
        readable = os.access(path, os.R_OK) and (path.is_file() or os.access(path, os.X_OK))
        if not readable:
            raise ParamsError(f"params.yaml: {key}: {value} cannot be read (permission denied)")


def compose(overrides: Sequence[str] = (), conf_dir: str | Path = "conf") -> dict:
    """The params mapping that ``dvc exp run -S key=value ...`` composes from ``conf/`` (Hydra), unvalidated;
    e.g. ``validate_params(compose(["profile=tiny", "schedule=cosine"]))``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        raw = OmegaConf.to_container(hydra_compose(config_name="config", overrides=list(overrides)), resolve=True)
    assert isinstance(raw, dict)  # conf/config.yaml is a mapping
    return raw
