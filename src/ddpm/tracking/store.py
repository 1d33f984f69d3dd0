"""The MLflow store: ``sqlite:///<root>/mlflow.db`` anchored at the project root (``DVC_ROOT``, which DVC points at
the main repository even under ``dvc exp run --temp`` and in queue workers) unless ``MLFLOW_TRACKING_URI`` is set,
made safe for concurrent writers; and a dataset's MLflow experiment."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ddpm.processes import project_root
from ddpm.storage.files import exclusive_lock

VIEW = "headline"  # the UI's shared view of an experiment: its pipeline runs, best FID first, headline columns
_VIEW_STATE = {
    "searchFilter": "tags.`ddpm.role` = 'pipeline'",
    "orderByKey": "metrics.`FID_train`",
    "orderByAsc": True,
    "selectedColumns": [
        *(f"metrics.`{m}`" for m in ("FID_train", "FID_test", "NLL_bpd", "KID")),
        *(f"params.`{p}`" for p in ("profile", "schedule", "objective", "variance")),
    ],
}
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",  # the UI opens the model-training view
    f"mlflow.sharedViewState.{VIEW}": json.dumps(_VIEW_STATE),  # read by the UI for ?viewStateShareKey=headline
}
DESCRIPTION_TAG = "mlflow.note.content"  # an experiment's description in the UI (Markdown)


def experiment_description(name: str, experiment_id: str) -> str:
    """What the experiment ``name`` holds and how to read it, with a link to its headline view."""
    dataset = name.removeprefix("ddpm-")
    return (
        f"ddpm-pipeline runs on {dataset}: one **pipeline run** per DVC execution (`dvc repro`, `dvc exp run`), "
        "named after its DVC experiment, setting and FID, with the headline metrics (FID vs train and test, NLL in "
        "bits/dim, KID) as columns, and below it one run per stage that ran. The trained EMA weights are versions of "
        f"the registered model `{name}`; `@best_fid` is the best comparable FID. "
        f"[Headline view: pipeline runs, best FID first](#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW}"
        "&workflowType=machine_learning) (`ddpm mlflow` prints it)."
    )


def ui_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's page for an experiment as it should open: the model-training view (MLflow 3 opens in its
    GenAI view, a per-browser setting that only this URL parameter overrides) and the headline view."""
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW}&workflowType=machine_learning"


def tracking_uri() -> str:
    """The store every stage, replay and query uses."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


_prepared: set[str] = set()


def prepare_store(uri: str) -> None:
    """Make a SQLite store safe for concurrent stages (two `dvc queue` workers, the UI reading meanwhile), once per
    process: the schema is created or migrated by one process at a time (a lock file beside the database), and the
    database is switched to write-ahead logging, where readers never block the writer; writers wait for each other
    (MLflow sets SQLite's busy timeout to 20 s). Other stores are left alone."""
    if not uri.startswith("sqlite:///") or uri in _prepared:
        return
    check_store_file(uri)
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(db.with_name(db.name + ".lock")):
        MlflowClient(uri).search_experiments(max_results=1)  # creates the schema on first use
        with sqlite3.connect(db, timeout=60) as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: recorded in the database file
        con.close()
    _prepared.add(uri)


def check_store_file(uri: str) -> None:
    """Refuse a SQLite store whose file exists but is empty (0 bytes: truncated, or a copy that failed), which
    SQLite would silently open as a new, empty store, every earlier run out of sight. The message reads as SQLite's
    for a damaged file, so that callers name the store as damaged and keep their log."""
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri.removeprefix("sqlite:///").split("?")[0])
    if db.is_file() and db.stat().st_size == 0:
        raise sqlite3.DatabaseError(
            f"file is not a database: {db} is empty (0 bytes); restore it, or delete it if it never held a store"
        )


def experiment_id(client: MlflowClient, name: str) -> str:
    """The MLflow experiment ``name``, created if missing (opening in the UI's model-training view); when another
    process (a second queue worker) creates it between our lookup and our create, theirs is taken."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        # Artifacts of a local store go beside it, at the project root; a server keeps them where it was told to
        # (`mlflow server --artifacts-destination`), so that every client reads and writes the same ones.
        local = client.tracking_uri.startswith(("sqlite:", "file:", "/"))
        location = (project_root() / "mlartifacts").as_uri() if local else None
        try:
            created = client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
            client.set_experiment_tag(created, DESCRIPTION_TAG, experiment_description(name, created))
            return created
        except MlflowException as err:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise err from None
    wanted = EXPERIMENT_TAGS | {DESCRIPTION_TAG: experiment_description(name, exp.experiment_id)}
    for key, value in wanted.items():  # an experiment made before these tags existed
        if exp.tags.get(key) != value:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def experiment_pages(uri: str, base: str) -> list[tuple[str, str]]:
    """(name, UI address as ``ui_url`` makes it) of each ddpm experiment in the store at ``uri``."""
    return [
        (e.name, ui_url(e.experiment_id, base))
        for e in MlflowClient(uri).search_experiments()
        if e.name.startswith("ddpm-")
    ]
