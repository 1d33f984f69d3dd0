"""Drawing N images in chunks: per-image seeds, fixed chunk boundaries, atomic chunk files, resumable.

Image i draws all its noise (x_T and every step's) from its own generator, seeded by (seed, i), and chunk
boundaries do not depend on the number of processes, so the images are the same bytes whether one process or
many made them, and whether or not an interrupted run was resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import SampleParams, Sampler
from .diffusion import GaussianDiffusion
from .fileio import atomic_write_text, file_digest
from .loader import to_uint8
from .respace import SpacedDiffusion, space_timesteps
from .sampling import ancestral_sample, ddim_sample

MANIFEST = "manifest.json"


def image_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def per_image_noise(seed: int, indices: range, shape: tuple[int, ...], device) -> Callable[[], torch.Tensor]:
    """A noise function drawing each image's noise from its own generator (seeded by its index)."""
    generators = [torch.Generator().manual_seed(image_seed(seed, i)) for i in indices]

    def draw() -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)

    return draw


def sampling_process(diffusion: GaussianDiffusion, cfg: SampleParams) -> GaussianDiffusion:
    """The process ancestral sampling runs over: respaced (iDDPM §4) when fewer steps are asked for."""
    steps = cfg.steps or diffusion.num_timesteps
    if cfg.sampler is Sampler.ANCESTRAL and (cfg.respacing or steps < diffusion.num_timesteps):
        return SpacedDiffusion(diffusion, space_timesteps(diffusion.num_timesteps, cfg.respacing or str(steps)))
    return diffusion


@torch.no_grad()
def generate(diffusion: GaussianDiffusion, model, cfg: SampleParams, shape: tuple[int, int, int], seed: int,
             start: int, count: int, device: str | torch.device = "cpu", progress=None) -> np.ndarray:
    """Images start..start+count−1 as uint8 N×H×W×C, in batches of ``cfg.batch_size``."""
    process = sampling_process(diffusion, cfg)
    out = []
    for lo in range(start, start + count, cfg.batch_size):
        indices = range(lo, min(lo + cfg.batch_size, start + count))
        noise_fn = per_image_noise(seed, indices, shape, device)
        size = (len(indices), *shape)
        if cfg.sampler is Sampler.DDIM:
            x = ddim_sample(diffusion, model, size, cfg.steps or diffusion.num_timesteps, eta=cfg.eta,
                            skip=cfg.skip, device=device, noise_fn=noise_fn)
        else:
            x = ancestral_sample(process, model, size, device=device, noise_fn=noise_fn)
        out.append(to_uint8(x).cpu().numpy())
        if progress is not None:
            progress.update(len(indices))
    return np.concatenate(out)


def sample_fingerprint(params, model_path: Path) -> str:
    """What the samples depend on: the weights, the process and the sampling params (not the process count)."""
    keys = params.model_dump(mode="json", include={"schedule", "timesteps", "mean_type", "variance", "seed", "sample"})
    keys["sample"].pop("batch_size")
    keys["sample"].pop("grid_size")
    keys["model_sha256"] = file_digest(Path(model_path))
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def chunk_layout(num_samples: int, chunk_size: int) -> list[tuple[str, int, int]]:
    """(file name, first image, count) of every chunk."""
    return [(f"chunk-{i:06d}.npz", lo, min(chunk_size, num_samples - lo))
            for i, lo in enumerate(range(0, num_samples, chunk_size))]


def _valid_chunk(path: Path, count: int) -> bool:
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["images"].shape[0] == count
    except (OSError, ValueError, KeyError, EOFError):
        return False


def clear_stale(out_dir: Path, fingerprint: str) -> None:
    """Remove chunks made with other params or weights (their fingerprint differs)."""
    marker = Path(out_dir) / "fingerprint"
    if Path(out_dir).is_dir() and (not marker.is_file() or marker.read_text() != fingerprint):
        for p in Path(out_dir).iterdir():
            p.unlink()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)


def sample_chunks(diffusion, model, cfg: SampleParams, shape, seed: int, out_dir: Path, rank: int = 0,
                  world_size: int = 1, device="cpu") -> list[str]:
    """Write this rank's missing chunks (chunks rank, rank + W, …); returns the names it wrote.

    Call ``clear_stale`` first (on one process). Each chunk is written to a temporary file and renamed.
    """
    out_dir = Path(out_dir)
    mine = chunk_layout(cfg.num_samples, cfg.chunk_size)[rank::world_size]
    todo = [c for c in mine if not _valid_chunk(out_dir / c[0], c[2])]
    written = []
    bar = tqdm(total=sum(c[2] for c in todo), desc=f"sample[{rank}]", unit="img", mininterval=2.0,
               disable=not todo)
    for name, start, count in todo:
        images = generate(diffusion, model, cfg, shape, seed, start, count, device, progress=bar)
        tmp = out_dir / f".{name}.tmp.npz"
        try:
            np.savez(tmp, images=images)
            os.replace(tmp, out_dir / name)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. a full disk: no partial file is left behind
            raise
        written.append(name)
    bar.close()
    return written


def write_manifest(out_dir: Path, cfg: SampleParams, fingerprint: str) -> dict:
    out_dir = Path(out_dir)
    chunks = []
    for name, start, count in chunk_layout(cfg.num_samples, cfg.chunk_size):
        if not _valid_chunk(out_dir / name, count):
            raise ValueError(f"samples: chunk {out_dir / name} is missing or incomplete")
        chunks.append({"name": name, "first": start, "count": count, "sha256": file_digest(out_dir / name)})
    manifest = {"num_samples": cfg.num_samples, "fingerprint": fingerprint, "chunks": chunks}
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_samples(out_dir: Path) -> np.ndarray:
    """All images of a finished sample folder, in index order (uint8 N×H×W×C)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"samples: {path} not found; run the sample stage")
    manifest = json.loads(path.read_text())
    parts = []
    for chunk in manifest["chunks"]:
        with np.load(Path(out_dir) / chunk["name"], allow_pickle=False) as f:
            parts.append(f["images"])
    return np.concatenate(parts)


def image_grid(images: np.ndarray, max_images: int = 64) -> np.ndarray:
    """Tile up to ``max_images`` N×H×W×C images into one square-ish H'×W'×C grid with 2-pixel borders."""
    images = images[:max_images]
    n, h, w, c = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + q * (w + 2) : 2 + q * (w + 2) + w] = img
    return grid
