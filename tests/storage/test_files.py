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
