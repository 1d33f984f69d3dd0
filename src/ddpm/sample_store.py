"""The sample store: N images drawn by index (``core.generation``) and kept in chunk files of fixed boundaries,
written atomically and resumable: an interrupted run redoes only missing chunks, chunks made with other weights
or sampling params are discarded, and the bytes do not depend on the number of processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ddpm.config import Params, SampleParams
from ddpm.core.generation import generate
from ddpm.factory import Inference
from ddpm.parallel import ONE_PROCESS, Elsewhere, WorkShare
from ddpm.progress import Counted, progress
from ddpm.storage.files import file_digest, write_npz, write_text

MANIFEST = "manifest.json"


def sample_fingerprint(params: Params, model_path: Path) -> str:
    """What the samples depend on: the weights, the process and the sampling params (not the process count)."""
    keys = params.model_dump(mode="json", include={"schedule", "timesteps", "mean_type", "variance", "seed", "sample"})
    keys["sample"].pop("batch_size")
    keys["sample"].pop("grid_size")
    keys["model_sha256"] = file_digest(Path(model_path))
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def chunk_layout(num_samples: int, chunk_size: int) -> list[tuple[str, int, int]]:
    """(file name, first image, count) of every chunk."""
    return [
        (f"chunk-{i:06d}.npz", lo, min(chunk_size, num_samples - lo))
        for i, lo in enumerate(range(0, num_samples, chunk_size))
    ]


def _valid_chunk(path: Path, count: int) -> bool:
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["images"].shape[0] == count
    except (OSError, ValueError, KeyError, EOFError):
        return False


def spare_folder(out_dir: Path, fingerprint: str) -> Path:
    """Where the chunks of ``fingerprint`` are written until all are made: beside the output folder and outside
    what DVC tracks, so that an interrupted run's chunks survive DVC putting the output folder back as its last
    commit had it (`dvc exp run` does before the stage runs again)."""
    return Path(out_dir).parent / f".{Path(out_dir).name}.chunks" / fingerprint


def clear_stale(out_dir: Path, fingerprint: str) -> None:
    """Remove chunks made with other params or weights (their fingerprint differs), finished or spare."""
    marker = Path(out_dir) / "fingerprint"
    if Path(out_dir).is_dir() and (not marker.is_file() or marker.read_text() != fingerprint):
        for p in Path(out_dir).iterdir():
            p.unlink()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)
    spare = spare_folder(out_dir, fingerprint)
    if spare.parent.is_dir():
        for other in spare.parent.iterdir():
            if other != spare:
                shutil.rmtree(other, ignore_errors=True)


def sample_chunks(
    inference: Inference,
    cfg: SampleParams,
    seed: int,
    out_dir: Path,
    share: WorkShare = ONE_PROCESS,
    spare: Path | None = None,
) -> list[str]:
    """Write this rank's missing chunks (chunks rank, rank + W, …) into ``spare`` (default: ``out_dir``); a chunk
    in either folder counts as made. Returns the names it wrote.

    Call ``clear_stale`` first (on one process). Each chunk is written to a temporary file and renamed.
    """
    out_dir = Path(out_dir)
    spare = Path(spare) if spare is not None else out_dir
    spare.mkdir(parents=True, exist_ok=True)
    mine = [chunk for _, chunk in share.mine(chunk_layout(cfg.num_samples, cfg.chunk_size))]
    todo = [c for c in mine if not (_valid_chunk(out_dir / c[0], c[2]) or _valid_chunk(spare / c[0], c[2]))]
    written = []
    bar = progress("sample", sum(c[2] for c in todo), "img", enabled=bool(todo) and share.is_main)
    for name, start, count in todo:
        images = generate(
            inference.diffusion,
            inference.model,
            inference.shape,
            seed=seed,
            start=start,
            count=count,
            batch_size=cfg.batch_size,
            device=inference.device,
            progress=bar,
            **cfg.sampler_options(),
        )
        write_npz(spare / name, images=images)
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
    write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _finished(out_dir: Path) -> list[dict]:
    """The chunks of a finished sample folder (its manifest's entries)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"samples: {path} not found; run the sample stage")
    return json.loads(path.read_text())["chunks"]


def _chunk_images(out_dir: Path, chunk: dict) -> np.ndarray:
    with np.load(Path(out_dir) / chunk["name"], allow_pickle=False) as f:
        return f["images"]


def load_samples(out_dir: Path) -> np.ndarray:
    """All images of a finished sample folder, in index order (uint8 N×H×W×C)."""
    return np.concatenate([_chunk_images(out_dir, chunk) for chunk in _finished(out_dir)])


def sample_batches(out_dir: Path, batch_size: int, share: WorkShare = ONE_PROCESS) -> Counted:
    """The images of a finished sample folder in index order as uint8 N×C×H×W batches of ``batch_size``, read a
    chunk file at a time: batch i only where ``share`` owns it (elsewhere an ``Elsewhere`` of its size), so no
    rank holds all the samples."""
    chunks = _finished(out_dir)
    total = sum(chunk["count"] for chunk in chunks)

    def batches() -> Iterator[torch.Tensor | Elsewhere]:
        held: tuple[int, np.ndarray] | None = None  # the chunk file last read
        for i, lo in enumerate(range(0, total, batch_size)):
            hi = min(lo + batch_size, total)
            if not share.owns(i):
                yield Elsewhere(hi - lo)
                continue
            parts = []
            for k, chunk in enumerate(chunks):
                first, end = chunk["first"], chunk["first"] + chunk["count"]
                if first < hi and end > lo:
                    if held is None or held[0] != k:
                        held = (k, _chunk_images(out_dir, chunk))
                    parts.append(held[1][max(lo, first) - first : min(hi, end) - first])
            yield torch.from_numpy(np.ascontiguousarray(np.concatenate(parts).transpose(0, 3, 1, 2)))

    return Counted(batches(), total)


@dataclass
class Sampled:
    generated: int  # images made by this run (the rest were reused)
    total: int
    seconds: float

    def metrics(self, num_processes: int) -> dict[str, float]:
        return {
            "num_samples": self.total,
            "generated_now": self.generated,
            "images_per_second": self.generated * num_processes / max(self.seconds, 1e-9),
        }


def fill(out_dir: Path, inference: Inference, params: Params, model_path: Path, share: WorkShare) -> Sampled | None:
    """Make every missing chunk of ``params.sample`` (processes take chunks round-robin, into the spare folder) and,
    on the main process, move them into ``out_dir`` and write the manifest; returns what was done there (None on
    other processes)."""
    fingerprint = sample_fingerprint(params, model_path)
    spare = spare_folder(out_dir, fingerprint)
    if share.is_main:
        clear_stale(out_dir, fingerprint)
    share.barrier()
    start = time.perf_counter()
    written = sample_chunks(inference, params.sample, params.seed, out_dir, share, spare)
    seconds = time.perf_counter() - start
    share.wait_for_all()  # ranks finish up to a chunk apart
    if not share.is_main:
        return None
    for chunk in sorted(spare.glob("chunk-*.npz")):
        os.replace(chunk, Path(out_dir) / chunk.name)  # whole files: a kill between two leaves both usable
    shutil.rmtree(spare.parent, ignore_errors=True)
    manifest = write_manifest(out_dir, params.sample, fingerprint)
    made = sum(c["count"] for c in manifest["chunks"] if c["name"] in written)
    return Sampled(made, manifest["num_samples"], seconds)
