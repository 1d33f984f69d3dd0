"""Resumable training checkpoints: ``<root>/<fingerprint>/step-NNNNNNNNN/`` folders of safetensors and JSON (no
pickle), one run folder per training fingerprint (``ddpm.training.fingerprint``).

Each checkpoint holds the model, the EMA, the optimizer and LR-scheduler state, the timestep sampler's history, the
step and the training log so far. Random streams need no saving: training reseeds them at every checkpoint
boundary. A checkpoint is written under a temporary name and renamed, so it exists whole or not at all; the newest
``keep`` of a run are kept. A run folder also holds ``params.json`` (the params it was trained with), so a run of
other params can say what differs; nothing here deletes another run's folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ddpm.storage.files import atomic_folder, read_json, write_json

META = "meta.json"
RUN_PARAMS = "params.json"  # in a run folder: its fingerprint, the fingerprinted params and the data digest
LOCK = ".lock"  # in a run folder: held by the process training into it


@dataclass
class Checkpoint:
    step: int
    path: Path


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Complete checkpoints under ``root``, oldest first."""
    if not Path(root).is_dir():
        return []
    found = []
    for p in Path(root).iterdir():
        if p.is_dir() and p.name.startswith("step-") and (p / META).is_file():
            found.append(Checkpoint(int(p.name.removeprefix("step-")), p))
    return sorted(found, key=lambda c: c.step)


def save_checkpoint(
    root: Path,
    step: int,
    fingerprint: str,
    model,
    ema_model,
    optimizer,
    scheduler,
    sampler_state: dict,
    history: list,
    keep: int,
    rng: dict[str, torch.Tensor] | None = None,
) -> Path:
    """``rng``: each process's random generators' states (``rng.<rank>.cpu``, ``rng.<rank>.cuda``) for a checkpoint
    between two checkpoint boundaries, from which a run resumes exactly where it stopped."""
    final = Path(root) / f"step-{step:09d}"
    with atomic_folder(final) as tmp:
        for name, module in (("model", model), ("ema", ema_model)):
            state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            save_file(state, str(tmp / f"{name}.safetensors"))
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        extra = {f"sampler.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in sampler_state.items()}
        extra |= rng or {}
        save_file(extra or {"empty": torch.zeros(0)}, str(tmp / "state.safetensors"))
        meta = {
            "step": step,
            "fingerprint": fingerprint,
            "optimizer": opt_meta,
            "scheduler": scheduler.state_dict(),
            "history": history,
        }
        (tmp / META).write_text(json.dumps(meta))
    # The newest ``keep`` at or below this step stay; a longer run's later checkpoints (a run asked for fewer
    # steps than one before it) are not this run's to remove.
    for old in [c for c in list_checkpoints(root) if c.step <= step][:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; anything else (a pickle, which could run code, or a damaged file) is refused."""
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - any parse failure means the file is not what we wrote
        raise ValueError(
            f"checkpoint: {path} is not a valid safetensors file ({str(err)[:120]}); refusing it "
            "(delete that checkpoint folder to resume from an older one)"
        ) from None


def load_checkpoint(path: Path, model, ema_model, optimizer, scheduler) -> dict:
    """Restore everything into the given objects; returns ``{"step", "sampler_state", "history", "fingerprint",
    "rng"}`` (``rng``: the generators' states saved with the checkpoint, by key; empty for most)."""
    path = Path(path)
    meta = json.loads((path / META).read_text())
    model.load_state_dict(_tensors(path / "model.safetensors"))
    ema_model.load_state_dict(_tensors(path / "ema.safetensors"))
    optimizer.load_state_dict(_unflatten_optimizer(_tensors(path / "optimizer.safetensors"), meta["optimizer"]))
    scheduler.load_state_dict(meta["scheduler"])
    extra = _tensors(path / "state.safetensors")
    sampler_state = {k.removeprefix("sampler."): v.numpy() for k, v in extra.items() if k.startswith("sampler.")}
    return {
        "step": meta["step"],
        "sampler_state": sampler_state,
        "history": meta["history"],
        "fingerprint": meta["fingerprint"],
        "rng": {k: v for k, v in extra.items() if k.startswith("rng.")},
    }


def checkpoint_fingerprint(path: Path) -> str:
    return json.loads((Path(path) / META).read_text())["fingerprint"]


def adopt_flat_checkpoints(root: Path) -> None:
    """Move checkpoints written straight into ``root`` (``root/step-N``, before run folders existed) into the run
    folder of the fingerprint they record, so they are kept like every other run's."""
    for ck in list_checkpoints(root):
        folder = Path(root) / checkpoint_fingerprint(ck.path)
        folder.mkdir(exist_ok=True)
        try:
            ck.path.rename(folder / ck.path.name)
        except OSError:  # another process moved it first, or the run folder has that step already
            pass


def open_run(folder: Path, record: dict) -> None:
    """Make the run folder, record its params once (``record``), and remove what killed writers left behind
    (temporary checkpoint folders); the caller holds the folder's lock."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / RUN_PARAMS).is_file():
        write_json(folder / RUN_PARAMS, record)
    for leftover in folder.glob(".step-*.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


@dataclass
class OtherRun:
    folder: Path
    newest: Checkpoint
    params: dict | None  # its fingerprinted params (None: not recorded)


def other_runs(root: Path, fingerprint: str) -> list[OtherRun]:
    """The run folders under ``root`` other than ``fingerprint``'s that hold a checkpoint, newest first."""
    found = []
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        checkpoints = list_checkpoints(folder) if folder.is_dir() and folder.name != fingerprint else []
        if checkpoints:
            try:
                params = read_json(folder / RUN_PARAMS)["params"]
            except (OSError, ValueError, KeyError):
                params = None
            found.append(OtherRun(folder, checkpoints[-1], params))
    return sorted(found, key=lambda run: (run.newest.path / META).stat().st_mtime, reverse=True)
