"""Keeping a stage's MLflow log when the tracking server is unreachable, and sending it later.

``ResilientRun`` wraps a ``StageRun``: a call that meets a busy store (SQLite locked by another writer, a row that
another writer inserted first) is retried
for a few seconds; the first call that still fails prints one warning, and from then on every
call is appended to ``mlflow-pending/<stage>-<time>-<pid>.jsonl`` (images beside it as .npy) instead of failing
the stage. ``ddpm replay mlflow-pending/*.jsonl`` replays such files into the current tracking store
(``MLFLOW_TRACKING_URI``, else the project's sqlite store) as new runs tagged ``ddpm.replayed``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ddpm.processes import ddpm_command

from .tracker import OPS, Tracker

RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)  # a busy store (another queue worker holding SQLite's write lock) is retried


# What a store says when a write lost a race it wins on the next try: SQLite's write lock held by another writer,
# and a get-or-create that another writer completed first (two queue workers logging the same dataset to one
# experiment at once: the loser's insert breaks the unique key, its retry finds the row), in SQLite's and
# PostgreSQL's words. The failed write was rolled back, so trying it again is safe.
TRANSIENT_MESSAGES = (
    "database is locked",
    "UNIQUE constraint failed",
    "duplicate key value violates unique constraint",
)


def _transient(err: Exception) -> bool:
    """A failure worth retrying: a lost race (``TRANSIENT_MESSAGES``) or a store saying it is temporarily
    unavailable."""
    text = str(err)
    return any(m in text for m in TRANSIENT_MESSAGES) or getattr(err, "error_code", "") == "TEMPORARILY_UNAVAILABLE"


def _retrying(fn, *args, **kwargs):
    for delay in RETRY_DELAYS_S:
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - only transient ones are retried, the rest re-raised
            if not _transient(err):
                raise
            time.sleep(delay)
    return fn(*args, **kwargs)


class ResilientRun(Tracker):
    """A Tracker that passes every call to a StageRun until MLflow fails, then appends it to a spool file."""

    def __init__(self, run, spool_dir: Path):
        self.run, self.spool_dir = run, Path(spool_dir)
        self.pending: Path | None = None

    @property
    def pipeline_run_id(self) -> str | None:
        return None if self.pending is not None else self.run.pipeline_run_id

    def __enter__(self) -> ResilientRun:
        try:
            _retrying(self.run.__enter__)
        except Exception as err:  # noqa: BLE001 - any tracking failure: keep the log locally
            self._offline(err)
        return self

    def __exit__(self, exc_type, exc, tb):
        status = "FINISHED" if exc_type is None else "FAILED"
        if self.pending is None:
            try:
                _retrying(self.run.__exit__, exc_type, exc, tb)
            except Exception as err:  # noqa: BLE001
                self._offline(err)
        if self.pending is not None:
            self._append({"op": "end", "status": status})
        return False

    # The Tracker's methods, each call passed to the stage run until MLflow fails, then spooled.
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._call("log_metrics", metrics, step=step)

    def log_series(self, series: dict[str, list[float]]) -> None:
        self._call("log_series", series)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", path, artifact_path=artifact_path)

    def log_image(self, image: np.ndarray, name: str, step: int | None = None) -> None:
        self._call("log_image", image, name, step=step)

    def log_table(self, rows: list[dict], name: str) -> None:
        self._call("log_table", rows, name)

    def log_json(self, obj, name: str) -> None:
        self._call("log_json", obj, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call("set_tags", tags)

    def log_summary(self, metrics: dict[str, float]) -> None:
        self._call("log_summary", metrics)

    def log_dataset(self, name: str, source: str, digest: str, context: str, tags: dict[str, str]) -> None:
        self._call("log_dataset", name, source, digest, context, tags)

    def log_model(self, weights: Path, params_file: Path, dataset: str, sha256: str) -> None:
        self._call("log_model", weights, params_file, dataset, sha256)

    def _call(self, name: str, *args, **kwargs) -> None:
        if self.pending is None:
            try:
                _retrying(getattr(self.run, name), *args, **kwargs)
                return
            except Exception as err:  # noqa: BLE001 - any tracking failure: keep the log locally
                self._offline(err)
        self._append(
            {
                "op": name,
                "args": [self._encode(a) for a in args],
                "kwargs": {k: self._encode(v) for k, v in kwargs.items()},
            }
        )

    def _offline(self, err: Exception) -> None:
        getattr(self.run, "abandon", lambda: None)()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.pending = self.spool_dir / f"{self.run.stage}-{stamp}-{os.getpid()}.jsonl"
        from .store import tracking_uri

        self._append(
            {
                "op": "start",
                "stage": self.run.stage,
                "experiment": self.run.experiment,
                "params": self.run.params,
                "purpose": self.run.purpose,
                "context": asdict(self.run.context),
                "parent_id": self.run.parent_id,
                "tracking_uri": tracking_uri(),
                "error": str(err)[:500],
            }
        )
        damage = store_damage(err)
        if damage:
            print(
                f"warning: the MLflow store at {tracking_uri()} is damaged ({damage}): restore it or set "
                f"MLFLOW_TRACKING_URI; this stage's log is kept in {self.pending} (send it later with: "
                f"{ddpm_command('replay', self.pending)})",
                file=sys.stderr,
            )
            return
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        print(
            f"warning: MLflow at {tracking_uri()} is unreachable ({first_line}); this stage's log is kept in "
            f"{self.pending}; send it later with: {ddpm_command('replay', self.pending)}",
            file=sys.stderr,
        )

    def _encode(self, value):
        if isinstance(value, np.ndarray):
            path = self.pending.with_name(f"{self.pending.stem}-{time.monotonic_ns()}.npy")
            np.save(path, value)
            return {"__ndarray__": str(path)}
        if isinstance(value, Path):
            return str(value.resolve())
        return value

    def _append(self, record: dict) -> None:
        assert self.pending is not None, "_offline names the spool file first"
        with open(self.pending, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _decode(value):
    if isinstance(value, dict) and "__ndarray__" in value:
        return np.load(value["__ndarray__"], allow_pickle=False)
    return value


def replay(path: Path) -> str:
    """Log one spooled file as a stage run where the live run would have gone: under its DVC experiment's
    pipeline run (re-created if missing), named and tagged as it would have been, with its params; returns its run
    id. The file is renamed to ``*.sent``."""
    from .runs import RunContext, StageRun

    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("op") != "start":
        raise ValueError(f"spool: {path} is not a pending MLflow log (no start record)")
    head = lines[0]
    context = RunContext(**head["context"]) if head.get("context") else None
    run = StageRun(head["stage"], head["params"], head["experiment"], purpose=head.get("purpose", ""), context=context)
    status = next((r["status"] for r in lines if r["op"] == "end"), "FAILED")
    with run:
        client, run_id, _ = run.ids()
        client.set_tag(run_id, "ddpm.replayed", "true")
        for record in lines[1:]:
            if record["op"] in OPS:
                getattr(run, record["op"])(
                    *map(_decode, record["args"]), **{k: _decode(v) for k, v in record["kwargs"].items()}
                )
        if status != "FINISHED":
            client.set_tag(run_id, "ddpm.original_status", status)
    Path(path).rename(Path(path).with_suffix(".sent"))
    return run_id


def store_damage(err: BaseException) -> str | None:
    """SQLite's message when ``err`` (or what caused it) says the store's file is damaged rather than busy or out
    of reach: "database disk image is malformed", "file is not a database"."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            break
        for line in str(seen).splitlines()[:1]:
            text = line.split(") ", 1)[-1] if line.startswith("(sqlite3.") else line
            if "malformed" in text or "not a database" in text:
                return text.strip()
        seen = seen.__cause__ or seen.__context__
    return None


def replay_files(files: list[str]) -> int:
    """Replay each file (``ddpm replay``); a failure is one line naming the file (and the store, when it is
    damaged); returns the exit status."""
    from .store import tracking_uri

    status = 0
    for name in files:
        try:
            print(f"{name} → run {replay(Path(name))}")
        except Exception as err:  # noqa: BLE001 - any failure: one line, the file stays for the next try
            damage = store_damage(err)
            if damage:
                print(
                    f"error: spool: the MLflow store at {tracking_uri()} is damaged ({damage}): restore it or set "
                    f"MLFLOW_TRACKING_URI; {name} was not sent",
                    file=sys.stderr,
                )
            else:
                first = (str(err).strip().splitlines() or [""])[0][:200]
                print(f"error: spool: {name} was not sent ({type(err).__name__}: {first})", file=sys.stderr)
            status = 1
    return status
