"""Which params decide the weights a training run arrives at, stated once.

``TRAINING_PARAMS`` is the train stage's ``params:`` list in dvc.yaml (a test checks that they are equal), so DVC
reruns train exactly when one of them changes and the train stage's MLflow run carries exactly these. The resume
fingerprint hashes them, less ``RESUMABLE``, together with the digest of the training shards: a checkpoint resumes
whenever nothing else changed, whatever happened to the sampling, evaluation or table sections.
"""

from __future__ import annotations

import hashlib
import json

from ddpm.config import Params, flatten

TRAINING_PARAMS = (
    "schedule",
    "timesteps",
    "objective",
    "mean_type",
    "variance",
    "hybrid_lambda",
    "decoder_cdf",
    "timestep_sampler",
    "seed",
    "model",
    "train",
)
# Keys of those sections that change no weight, or only float rounding: a checkpoint made under other values
# resumes (bit-exactness then holds only if they stay the same).
RESUMABLE = (
    "model.import_from",
    "train.steps",
    "train.log_every",
    "train.loader_workers",
    "train.keep_checkpoints",
    "train.activation_checkpointing",
    "train.compile",
    "train.channels_last",
    "train.deterministic",
    "train.sample_every",
    "train.sample_images",
    "train.sample_steps",
)


def fingerprinted_params(params: Params) -> dict[str, object]:
    """The training params a checkpoint must share with ``params`` to be resumed, as dotted keys."""
    flat = flatten({name: value for name, value in params.model_dump(mode="json").items() if name in TRAINING_PARAMS})
    return {k: v for k, v in flat.items() if not any(k == r or k.startswith(r + ".") for r in RESUMABLE)}


def training_fingerprint(params: Params, data_digest: str) -> str:
    """16 hex digits naming one training run: its fingerprinted params and the digest of its training shards."""
    identity = {"params": fingerprinted_params(params), "data": data_digest}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def changed_params(old: dict[str, object], new: dict[str, object]) -> list[str]:
    """``key: old → new`` for every fingerprinted param that differs, sorted by key."""

    def shown(values: dict[str, object], key: str) -> str:
        return str(values[key]) if key in values else "(absent)"

    keys = sorted(old.keys() | new.keys())
    return [f"{k}: {shown(old, k)} → {shown(new, k)}" for k in keys if shown(old, k) != shown(new, k)]
