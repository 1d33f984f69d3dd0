"""Running one pipeline stage: claim the workspace, validate params first, fail with one line, log the stage to
MLflow."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ddpm.config import Params, ParamsError, experiment_name, load_params
from ddpm.data.shared_memory import worker_failure
from ddpm.device_defaults import resolve_auto
from ddpm.processes import project_root
from ddpm.storage.files import WriteError
from ddpm.tracking.tracker import NullRun
from ddpm.tracking.tracker import Tracker as Run

from .dvc_parent import stop_with_dvc
from .paths import Paths
from .workspace import claim_workspace, hold_params

if TYPE_CHECKING:
    from .placement import Placement

# What a stage script's main(params, paths, run[, placement]) receives, for its annotations.
__all__ = ["Params", "Paths", "Placement", "Run", "Stopwatch", "exit_now", "stage_main"]


def __getattr__(name: str) -> type:
    """``Placement`` on first use: its module imports torch, which only the compute stages load."""
    if name == "Placement":
        from .placement import Placement

        return Placement
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Errors reported as one line (exit status 1, the message on stderr) rather than a traceback: bad params or
# inputs, a diverged loss, and failed reads or writes (a full disk, a read-only folder: OSError names the file).
USER_ERRORS = (ValueError, OSError, FloatingPointError)
OUTSIDE_DVC = "DDPM_TRACK_OUTSIDE_DVC"  # 1: a stage run by hand logs to MLflow as under DVC


class Stopwatch:
    """``with Stopwatch() as clock: ...`` then ``clock.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.start, self.seconds = time.perf_counter(), 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def fail(message: str, shown: bool = False) -> NoReturn:
    """End the process with exit status 1 and ``message`` on stderr (unless already ``shown`` there). Under
    ``accelerate launch`` (torchrun) the message also goes to the rank's error file, so the launcher's failure
    report names it as the root cause."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        try:
            Path(error_file).write_text(json.dumps({"message": message, "timestamp": int(time.time())}))
        except OSError:
            pass  # the message still reaches stderr
    sys.exit(1 if shown else message)


def purpose(body: Callable) -> str:
    """The first sentence of the docstring of the stage script defining ``body`` ("Stage train: fit the ...")."""
    doc = " ".join((sys.modules[body.__module__].__doc__ or "").split())
    return doc.split(". ")[0].rstrip(".")


StageBody = Callable[..., None]  # (params, paths, run) or, for a compute stage, (params, paths, run, placement)


def stage_main(
    stage: str,
    body: StageBody,
    params_path: str = "params.yaml",
    *,
    compute: bool = False,
    tracked: bool = True,
    on_refusal: Callable[[], str] | None = None,
) -> None:
    """Validate params, open the MLflow stage run, run ``body(params, paths, run)``; a user error ends the process
    with exit status 1 and one line ``error: <stage>: <message>`` on stderr.

    A ``compute`` stage also gets its ``Placement`` (device and process group) as a fourth argument, and its run
    records the device, process count, wall time and peak memory. An untracked stage logs nothing (``NullRun``).
    The workspace is claimed for the pipeline execution, and its params.yaml held, at the stage's start and end
    (``workspace``). ``on_refusal`` runs when a bad value or input stops the stage; its text ends the line (what it
    put back, how to get on)."""

    def refused(message: str) -> str:
        return message + (on_refusal() if on_refusal is not None else "")

    stop_with_dvc(stage)
    try:
        claim_workspace(stage)
        hold_params(Path(params_path), stage)
    except USER_ERRORS as err:
        _fail_before_run(f"error: {stage}: {err}", tracked)
    placement = None
    if compute and int(os.environ.get("GROUP_RANK", "0")) > 0:
        # A node that joins node 0's stage reads params.yaml only after the rendezvous: node 0's DVC may still be
        # writing it (`dvc exp run -S`) when this node starts.
        placement = _place(stage)
    try:
        params = load_params(params_path)
    except USER_ERRORS as err:
        _fail_before_run(refused(f"error: {err}"), tracked)
    if compute:  # torch and Accelerate are imported only by the stages that compute (not prepare's or report's)
        placement = placement or _place(stage)
        try:
            placement.agree("params.yaml", Path(params_path).read_bytes())
        except USER_ERRORS as err:
            _fail_before_run(f"error: {stage}: {err}", tracked)
        params, placement.auto = resolve_auto(params, placement.device.type)  # logged and run as resolved
    # Under `accelerate launch` only the first process logs.
    logged = tracked and int(os.environ.get("RANK", "0")) == 0 and _logged_here(stage)
    tracker = _tracker(stage, params, body, compute) if logged else NullRun()
    try:
        with tracker as run:
            if placement is None:
                body(params, Paths(params), run)
            else:
                body(params, Paths(params), run, placement)
                cost = placement.summary()
                tags = {"ddpm.device": cost.pop("device"), "ddpm.num_processes": str(cost["num_processes"])}
                auto = cost.pop("auto")
                run.set_tags(tags | ({"ddpm.auto": "; ".join(f"{k}={v}" for k, v in auto.items())} if auto else {}))
                run.log_metrics(cost)
        hold_params(Path(params_path), stage)
    except ParamsError as err:  # a params value, named as validation names it
        fail(refused(f"error: {err}"))
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: training says what it saved
        fail(f"error: {stage}: {err or 'interrupted; rerun it to resume from what was saved'}")
    except (*USER_ERRORS, RuntimeError, EOFError) as err:
        fail(refused(f"error: {stage}: {_stage_error(err, placement)}"))


def _fail_before_run(message: str, tracked: bool) -> NoReturn:
    """``fail`` for a stage stopped before its MLflow run starts: the message first, then (first process only) the
    pipeline execution's run, FINISHED by the previous stage, is marked FAILED."""
    if tracked and int(os.environ.get("RANK", "0")) == 0:
        print(message, file=sys.stderr, flush=True)
        from ddpm.tracking.runs import fail_pipeline_run

        fail_pipeline_run()
        fail(message, shown=True)
    fail(message)


def _logged_here(stage: str) -> bool:
    """Whether this run of the stage goes to MLflow: always under DVC (which sets ``DVC_STAGE``); run by hand, only
    when ``DDPM_TRACK_OUTSIDE_DVC=1`` asks (else a note says why nothing is logged: no pipeline run, no model
    version that repeats the pipeline's)."""
    if "DVC_STAGE" in os.environ or os.environ.get(OUTSIDE_DVC) == "1":
        return True
    print(
        f"note: {stage}: run outside DVC, so nothing goes to MLflow (no run, no model version); `dvc repro "
        f"{stage}` runs it in the pipeline, {OUTSIDE_DVC}=1 logs this run",
        file=sys.stderr,
        flush=True,
    )
    return False


def _place(stage: str):
    """The stage's process group (Accelerate); a failed rendezvous ends the process in one line."""
    from .placement import Placement

    try:
        return Placement.start()
    except ValueError as err:  # a group that cannot connect, named
        fail(f"error: {stage}: {err}")
    except RuntimeError as err:
        lost = Placement.lost_peer(err)
        if lost is None:
            raise
        fail(f"error: {stage}: {lost}")


HTTP_RETRIES = {  # MLflow's client: ~7 s of retries on a refused connection or a 5xx, 60 s per request
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def _tracker(stage: str, params, body: StageBody, compute: bool):
    """The stage's MLflow run, kept in a local file while the store is out of reach or damaged."""
    from ddpm.tracking.runs import StageRun  # imported after validation: a bad params file must not wait for MLflow
    from ddpm.tracking.spool import ResilientRun

    # A dead tracking server should cost seconds, not MLflow's default minutes of retries; a busy one (a shared
    # server's SQLite locked by another queue worker, a CPU taken by training) a few retries and a minute's wait.
    for key, value in HTTP_RETRIES.items():
        os.environ.setdefault(key, value)
    stage_run = StageRun(
        stage,
        params.model_dump(mode="json"),
        experiment_name(params.dataset.value),
        purpose=purpose(body),
        system_metrics=compute,
    )
    return ResilientRun(stage_run, project_root() / "mlflow-pending")


def _stage_error(err: BaseException, placement: Placement | None) -> str:
    """The one line for an error that ends a stage: a DataLoader worker's death (with the shared memory it had), a
    lost process of the group (another node, say), a user error; any other error is raised again (a traceback)."""
    line = worker_failure(err)
    if line is None and isinstance(err, RuntimeError | EOFError):
        line = placement.lost_peer(err) if placement is not None and isinstance(err, RuntimeError) else None
        if line is None:
            raise err
    return line or _one_line(err)


def _one_line(err: BaseException) -> str:
    """A user error as one line: an OSError as "<file>: <reason>" rather than "[Errno 28] <reason>: '<file>'"."""
    if isinstance(err, OSError) and not isinstance(err, WriteError) and err.strerror and err.filename:
        return f"{err.filename}: {err.strerror}"
    return str(err)


def exit_now() -> NoReturn:
    """End a finished stage's process at once (exit status 0): flush logging and the standard streams, then
    ``os._exit``. Python's own teardown of the torch, MLflow and torchvision modules a stage imports costs 1–2 s
    per process, eleven times a pipeline run, and has nothing left to do: every output is already renamed into
    place and the MLflow run is closed (which also stops its system-metrics thread). The stages' only other
    thread is the process group's heartbeat (a daemon); they start no child processes."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
