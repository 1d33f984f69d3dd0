"""The image metrics beyond FID, computed by torch-fidelity: KID, precision/recall, IS; and this project's
TF-Inception registered with torch-fidelity as the feature extractor ``inception-v3-tf-ts`` (for
``torch_fidelity.calculate_metrics(feature_extractor="inception-v3-tf-ts", ...)``, offline). Only evaluate imports
this module: importing torch_fidelity costs ~1.2 s (see ``fid``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_prc import prc_features_to_metric

from ddpm.config import Params
from ddpm.parallel import ONE_PROCESS, WorkShare, every_host_core
from ddpm.progress import Counted

from .fid import FEATURE, TFInception, fid_of_features, inception_features, load_features
from .fid_reference import EXTRACTOR_NAME
from .isc_weights import Unavailable, isc_weights_path
from .kid import kernel_inception_distance


class TFInceptionFeatureExtractor(FeatureExtractorBase):
    """``fid.TFInception`` in torch-fidelity's feature-extractor interface (one feature layer, "2048")."""

    def __init__(self, name=EXTRACTOR_NAME, features_list=(FEATURE,), **kwargs):
        super().__init__(name, list(features_list))
        self.inception = TFInception()

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
        return (self.inception(x),)


torch_fidelity.register_feature_extractor(EXTRACTOR_NAME, TFInceptionFeatureExtractor)


def kid_precision_recall(
    samples: np.ndarray,
    reference: np.ndarray,
    subset_size: int,
    seed: int,
    device: str | torch.device,
) -> dict[str, float]:
    """KID (MMD² with the cubic polynomial kernel, mean ± std over 100 subsets; ``kid``) and precision / recall
    (k = 3 nearest-neighbour balls; torch-fidelity's) of sample features against reference features, on
    ``device``; on a CPU with every host core (the other processes of a group wait meanwhile)."""
    n = min(len(samples), len(reference), subset_size)
    if n < 4:
        raise ValueError(f"KID / precision-recall: need at least 4 images on each side, got {n}")
    device = torch.device(device)
    a = torch.from_numpy(np.asarray(samples, np.float64)).to(device)
    b = torch.from_numpy(np.asarray(reference, np.float64)).to(device)
    with every_host_core(device):
        kid, kid_std = kernel_inception_distance(a, b, n, seed)
        prc = prc_features_to_metric(a.float(), b.float(), save_cpu_ram=True, verbose=False)
    return {"kid": kid, "kid_std": kid_std, "precision": float(prc["precision"]), "recall": float(prc["recall"])}


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
        features = inception_features(samples, device, share, desc="inception samples", everywhere=False)
        if share.is_main:
            fids = fid_of_features(features, references)
            metrics |= {f"fid_{split}": value for split, value in fids.items()}
            metrics["fid_seconds"] = time.perf_counter() - start
            metrics |= kid_precision_recall(
                features, load_features(references["train"]), params.fid.kid_subset_size, params.seed, device
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
