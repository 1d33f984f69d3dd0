"""The plain-file writers: CSV rows read back as written by any CSV reader (DVC's plots included)."""

import csv

from ddpm.storage.files import write_csv


def test_csv_cells_with_commas_quotes_and_line_breaks_read_back_whole(tmp_path):
    rows = [
        {"step": 20, "loss": 0.1234567, "objective": "L_simple, linear", "note": None},
        {"step": 40, "loss": 0.5, "objective": 'say "hi"', "note": "two\nlines"},
    ]
    path = tmp_path / "plot.csv"
    write_csv(path, rows)
    with path.open(newline="") as f:
        back = list(csv.DictReader(f))
    assert back == [
        {"step": "20", "loss": "0.123457", "objective": "L_simple, linear", "note": ""},
        {"step": "40", "loss": "0.5", "objective": 'say "hi"', "note": "two\nlines"},
    ]
    assert path.read_text().splitlines()[1] == '20,0.123457,"L_simple, linear",'  # plain cells stay unquoted


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_write(tmp_path):
    """SIGKILL inside ``atomic_folder`` leaves its temporary folder; the next write of the same folder removes it,
    and leaves alone one whose writer still runs (here: this process)."""
    import os
    import subprocess
    import sys

    from ddpm.storage.files import atomic_folder

    out = tmp_path / "shards"
    killed = (
        "import os, signal, sys; from pathlib import Path; from ddpm.storage.files import atomic_folder\n"
        "with atomic_folder(Path(sys.argv[1])) as tmp:\n"
        "    (tmp / 'train-000000.tar').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", killed, str(out)]).returncode == -9
    [left] = tmp_path.glob(".shards.tmp-*")
    live = tmp_path / f".shards.tmp-{os.getpid()}-elsewhere"
    live.mkdir()
    with atomic_folder(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not left.exists() and live.exists()
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
