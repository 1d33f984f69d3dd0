"""The workspace claim in DVC's lock file (``stage/workspace.py``); the end-to-end refusals of a second run are in
tests/pipeline/test_never_lose_work.py."""

import os

from ddpm.processes import identity
from ddpm.stage.workspace import OURS, _holds


def test_a_claim_whose_dvc_process_ended_is_stale_whatever_its_watcher_does():
    """A workspace copied (or a machine restarted) while a claim's watcher still ran keeps the claim in DVC's lock
    file: it holds only while the DVC process it names runs."""
    me = identity()
    live_watcher = str(os.getpid())
    assert _holds({"pid": live_watcher, "cmd": f"{OURS}dvc repro [{me}]"})
    assert not _holds({"pid": live_watcher, "cmd": f"{OURS}dvc repro evaluate [{os.getpid()}:1]"})
    assert _holds({"pid": live_watcher, "cmd": "dvc exp run"})  # DVC's own hold: its process
