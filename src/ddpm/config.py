"""The params.yaml schema: validated once, at the start of every stage, before any work."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .diffusion import LossType, MeanType, VarType
from .respace import space_timesteps
from .sampling import Skip
from .schedules import Schedule, get_beta_schedule
from .timesteps import TimestepSamplerType

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class ParamsError(ValueError):
    """A one-line error naming the offending params key."""


class Dataset(StrEnum):
    DIGITS = "digits"  # scikit-learn's 8×8 digits, bundled with scikit-learn (the tiny profile)
    CIFAR10 = "cifar10"  # official pickle tarball (downloaded or local) or a tar of train/ and test/ class folders
    LSUN_CHURCH = "lsun_church"  # LSUN lmdb exports
    LSUN_BEDROOM = "lsun_bedroom"
    LSUN_CAT = "lsun_cat"
    CELEBAHQ = "celebahq"  # a folder (or tar) of 256×256 images
    FOLDER = "folder"  # any folder or tar of images, optionally one sub-folder per class


class Sampler(StrEnum):
    ANCESTRAL = "ancestral"  # DDPM Algorithm 2
    DDIM = "ddim"  # DDIM eq. 12


class Precision(StrEnum):
    NO = "no"  # float32
    BF16 = "bf16"  # bfloat16 autocast (CPU and Ampere+ GPUs)
    FP16 = "fp16"  # float16 autocast with loss scaling (CUDA only)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


class DataParams(_Section):
    source: str | None = None  # a local copy: file, folder or lmdb (cifar10: the official tarball or class folders)
    download: bool = True  # cifar10 without source: fetch url, resumable, MD5-checked
    url: str = CIFAR10_URL
    md5: str = CIFAR10_MD5
    resolution: PositiveInt = 32
    shard_size: PositiveInt = 10000  # images per shard
    test_size: PositiveInt = 300  # held-out test images (digits, lsun_*, celebahq, folder; cifar10 has its own)
    limit: PositiveInt | None = None  # at most this many images per split
    skip_corrupt: bool = False  # leave out (and count) undecodable images instead of failing
    class_folders: bool = False  # folder: the first sub-folder names the class


class ModelParams(_Section):
    ch: PositiveInt = 128
    ch_mult: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 2, 2], min_length=1)
    num_res_blocks: PositiveInt = 2
    attn_resolutions: list[PositiveInt] = Field(default_factory=lambda: [16])
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    num_heads: PositiveInt = 1
    scale_shift_norm: bool = False
    resblock_updown: bool = False


class TrainParams(_Section):
    lr: Annotated[float, Field(gt=0)] = 2e-4
    batch_size: PositiveInt = 128
    steps: PositiveInt = 800_000
    warmup: NonNegativeInt = 5000
    grad_clip: Annotated[float, Field(gt=0)] | None = 1.0
    ema_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9999
    random_flip: bool = True
    log_every: PositiveInt = 100
    shuffle_buffer: PositiveInt = 5000
    checkpoint_every: PositiveInt = 10_000  # steps between resumable checkpoints (also reseeds the data stream)
    keep_checkpoints: PositiveInt = 2
    grad_accumulation: PositiveInt = 1  # micro-batches per optimizer step (batch_size is the global batch)
    mixed_precision: Precision = Precision.NO
    activation_checkpointing: bool = False  # recompute U-Net blocks in backward: less memory, ~30% more compute
    compile: bool = False  # torch.compile the network
    channels_last: bool = False  # NHWC memory format (faster convolutions on tensor cores)
    sample_every: NonNegativeInt = 0  # steps between EMA sample grids logged to MLflow (0: none)
    sample_images: PositiveInt = 16  # images in that grid
    sample_steps: PositiveInt = 50  # DDIM (η = 0) steps for that grid


class SampleParams(_Section):
    num_samples: PositiveInt = 50_000
    sampler: Sampler = Sampler.ANCESTRAL
    steps: PositiveInt | None = None  # None: all T steps
    respacing: str | None = None  # ancestral only: iDDPM section counts such as "10,10,10" or "ddim50"
    eta: float | Literal["sigma_hat"] = 0.0  # DDIM η in [0, 1], or DDIM Table 1's σ̂
    skip: Skip = Skip.UNIFORM
    batch_size: PositiveInt = 256
    chunk_size: PositiveInt = 5000  # images per sample file (the unit of resumption and of work per process)
    grid_size: PositiveInt = 64

    @field_validator("eta", mode="before")
    @classmethod
    def _eta(cls, value):
        if value == "sigma_hat":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ValueError("must be a number in [0, 1] or 'sigma_hat'")
        return float(value)


class FidParams(_Section):
    max_images: PositiveInt | None = None  # None: the whole split
    batch_size: PositiveInt = 64
    feature_images: PositiveInt = 10_000  # reference features kept for KID and precision/recall
    kid_subset_size: PositiveInt = 1000


class EvaluateParams(_Section):
    fid: bool = True
    isc: bool = True
    isc_weights: str | None = None  # torch-fidelity's Inception weights file, if you have it (IS needs them)
    nll_images: PositiveInt = 10_000
    nll_batch_size: PositiveInt = 100


class FiguresParams(_Section):
    images: PositiveInt = 8  # progressive generation: rows (one reverse chain each)
    frames: Annotated[int, Field(ge=2)] = 10  # progressive generation: x̂0 snapshots per chain
    latent_fractions: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75, 1.0], min_length=1)  # shared x_t at t = fraction × T
    per_latent: PositiveInt = 3  # samples from each shared x_t
    interpolation_points: Annotated[int, Field(ge=2)] = 8
    ddim_steps: PositiveInt = 50  # DDIM slerp interpolation steps
    reconstruction_images: PositiveInt = 64  # test images for DDIM Table 2
    reconstruction_steps: list[PositiveInt] = Field(default_factory=lambda: [10, 20, 50, 100, 200, 500, 1000],
                                                    min_length=1)  # S > T are left out of the table


class DdimTableParams(_Section):
    """DDIM Table 1: FID for every S × η (the ddim_fid stage is a DVC matrix over these lists)."""

    steps: list[PositiveInt] = Field(default_factory=lambda: [10, 20, 50, 100, 1000], min_length=1)  # S > T: n/a
    etas: list[float | Literal["sigma_hat"]] = Field(default_factory=lambda: [0.0, 0.2, 0.5, 1.0, "sigma_hat"],
                                                    min_length=1)
    num_samples: PositiveInt = 50_000  # per cell (DDIM used 50k)

    @field_validator("etas", mode="before")
    @classmethod
    def _etas(cls, values):
        if isinstance(values, list):
            for v in values:
                SampleParams._eta(v)
        return values


class Params(_Section):
    profile: str = "cifar10_ddpm"
    dataset: Dataset = Dataset.CIFAR10
    schedule: Schedule = Schedule.LINEAR
    timesteps: PositiveInt = 1000
    objective: LossType = LossType.SIMPLE
    mean_type: MeanType = MeanType.EPSILON
    variance: VarType = VarType.FIXED_LARGE
    hybrid_lambda: Annotated[float, Field(ge=0.0)] = 0.001
    timestep_sampler: TimestepSamplerType = TimestepSamplerType.UNIFORM
    seed: NonNegativeInt = 0
    launcher: Annotated[str, Field(min_length=1)] = "python"  # how dvc.yaml starts train and sample
    data: DataParams = Field(default_factory=DataParams)
    model: ModelParams = Field(default_factory=ModelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    sample: SampleParams = Field(default_factory=SampleParams)
    fid: FidParams = Field(default_factory=FidParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    figures: FiguresParams = Field(default_factory=FiguresParams)
    ddim_table: DdimTableParams = Field(default_factory=DdimTableParams)

    @model_validator(mode="after")
    def _consistent(self):
        get_beta_schedule(self.schedule.value, self.timesteps)  # e.g. a linear schedule that reaches β = 1
        if self.variance in (VarType.LEARNED, VarType.LEARNED_RANGE) and self.objective is LossType.SIMPLE:
            raise ValueError(
                f"variance: {self.variance.value!r} gets no gradient from objective 'simple'; use 'hybrid' or 'vlb'"
            )
        if self.train.batch_size % self.train.grad_accumulation:
            raise ValueError(
                f"train.batch_size: {self.train.batch_size} is not divisible by train.grad_accumulation "
                f"({self.train.grad_accumulation})"
            )
        if self.train.sample_steps > self.timesteps:
            raise ValueError(f"train.sample_steps: {self.train.sample_steps} exceeds timesteps ({self.timesteps})")
        if self.figures.ddim_steps > self.timesteps:
            raise ValueError(f"figures.ddim_steps: {self.figures.ddim_steps} exceeds timesteps ({self.timesteps})")
        if min(self.figures.reconstruction_steps) > self.timesteps:
            raise ValueError(f"figures.reconstruction_steps: all exceed timesteps ({self.timesteps})")
        if self.sample.steps is not None and self.sample.steps > self.timesteps:
            raise ValueError(f"sample.steps: {self.sample.steps} exceeds timesteps ({self.timesteps})")
        if self.sample.respacing is not None:
            if self.sample.sampler is not Sampler.ANCESTRAL:
                raise ValueError("sample.respacing: applies to sampler 'ancestral'; DDIM uses sample.steps and skip")
            try:
                space_timesteps(self.timesteps, self.sample.respacing)
            except ValueError as err:
                raise ValueError(f"sample.{err} (timesteps {self.timesteps})") from None
        levels = len(self.model.ch_mult) - 1
        if self.data.resolution % 2**levels:
            raise ValueError(
                f"model.ch_mult: {levels + 1} levels need data.resolution divisible by {2**levels}, "
                f"got {self.data.resolution}"
            )
        return self


def _format(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if first["type"] in ("missing",):
        return f"{loc}: required key is missing"
    value = first.get("input")
    got = "" if isinstance(value, dict) or value is None else f" (got {value!r})"
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
