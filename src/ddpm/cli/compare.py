"""`ddpm compare`: the experiments side by side, in a table that fits a terminal: each experiment's headline
metrics (``metrics/summary.json``) and only the params that differ among the experiments shown (with one
experiment: its profile, schedule and objective). The baseline commit and the workspace are rows only with
``--baseline``: their params.yaml is usually the committed default profile, which differs from a tiny experiment
in dozens of keys.

    ddpm compare                       # every experiment of the current commit, best FID (vs train) first
    ddpm compare tiny-linear my-exp    # only these
    ddpm compare -A --md               # experiments of every commit, as Markdown
    ddpm compare --baseline            # with the commit's and the workspace's rows

The stages' detail metrics (timings, memory, per-cell values) are in ``dvc metrics show metrics/<file>.json``, and
any two experiments' differences in full in ``dvc metrics diff <a> <b>`` and ``dvc params diff <a> <b>``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ddpm.config import flatten

from . import command_parser

SUMMARY = "metrics/summary.json"
# (key in summary.json, column header, format): what the report's headline shows
HEADLINE = (
    ("FID_train", "FID train", "{:.2f}"),
    ("FID_test", "FID test", "{:.2f}"),
    ("NLL_bpd", "NLL bpd", "{:.3f}"),
    ("KID", "KID", "{:.4f}"),
    ("Prec", "Prec", "{:.3f}"),
    ("Rec", "Rec", "{:.3f}"),
    ("train_steps", "steps", "{}"),
    ("samples", "samples", "{}"),
)
IDENTITY = ("profile", "schedule", "objective")  # what names a lone experiment; first among differing params
WIDTH = 160  # the table's width when the output is not a terminal
VALUE_WIDTH = 24  # longer param values are cut, ending in "…"


@dataclass
class Row:
    name: str
    params: dict[str, object]
    summary: dict[str, object]
    state: str = ""  # "" when the experiment finished; else DVC's (queued, running, failed)
    extra: list[str] = field(default_factory=list)


def rows(show: list[dict], baseline: bool = False) -> list[Row]:
    """The experiments in `dvc exp show --json` output (each commit's), and with ``baseline`` the commits' and
    the workspace's own rows."""
    out = []
    for entry in show:
        if baseline:
            rev = str(entry.get("rev", ""))
            out.append(_row(entry, entry.get("name") or (rev if rev == "workspace" else rev[:7]), ""))
        for exp in entry.get("experiments") or []:
            revs = exp.get("revs") or [{}]
            state = ((exp.get("executor") or {}).get("state") or "").lower()
            out.append(_row(revs[0], exp.get("name") or revs[0].get("name") or revs[0].get("rev", "")[:7], state))
    return out


def _row(rev: dict, name: str, state: str) -> Row:
    data = rev.get("data") or {}
    params = flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})
    summary = ((data.get("metrics") or {}).get(SUMMARY) or {}).get("data") or {}
    return Row(name, params, summary, "" if state in ("", "success") else state)


def differing(table: list[Row]) -> list[str]:
    """The params whose values differ among the rows (the identity params first), or the identity params of a lone
    row."""
    keys = dict.fromkeys(k for row in table for k in row.params)
    diff = [k for k in keys if len({json.dumps(row.params.get(k), sort_keys=True) for row in table}) > 1]
    if len(table) == 1:
        diff = [k for k in IDENTITY if k in keys]
    return sorted(diff, key=lambda k: (IDENTITY.index(k) if k in IDENTITY else len(IDENTITY), k))


def _value(value: object) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _metric(value: object, fmt: str) -> str:
    if not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        return "—" if value is None else str(value)
    return fmt.format(value)


def render(table: list[Row], width: int = WIDTH, markdown: bool = False, sort_by: str = "FID_train") -> str:
    """The table as aligned text (or Markdown), sorted by ``sort_by`` (missing values last). To fit ``width``,
    metric columns equal in every row go first (their value said below the table), then the differing params
    from the last (named below it); the first differing param always stays."""
    if not table:
        return "no experiments to compare (run one: dvc exp run; list them: dvc exp list)"

    def order(row: Row) -> tuple:
        v = row.summary.get(sort_by)
        return (not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else 0, row.name)

    table = sorted(table, key=order)
    names = [row.name + (f" ({row.state})" if row.state else "") for row in table]
    metrics = [(h, [_metric(row.summary.get(k), fmt) for row in table]) for k, h, fmt in HEADLINE]
    metrics = [(h, cells) for h, cells in metrics if any(c != "—" for c in cells)]
    params = [(k, [_value(row.params.get(k)) for row in table]) for k in differing(table)]
    columns = [("Experiment", names), *params, *metrics]
    left_out: list[str] = []
    same: list[str] = []
    n_params = len(params)
    while not markdown and _width(columns) > width:
        constant = [i for i in range(1 + n_params, len(columns)) if len(table) > 1 and len(set(columns[i][1])) == 1]
        if constant:
            header, cells = columns.pop(constant[-1])
            same.insert(0, f"{header} {cells[0]}")
        elif n_params > 1:
            left_out.insert(0, columns.pop(n_params)[0])
            n_params -= 1
        else:
            break
    lines = _markdown(columns) if markdown else _text(columns, n_params)
    if same:
        lines.append(f"(the same in every row: {', '.join(same)})")
    if left_out:
        note = f"(+{len(left_out)} params that differ, left out to fit; all with --md: "
        shown = [k for i, k in enumerate(left_out) if len(note + ", ".join(left_out[: i + 1])) + 3 <= width]
        lines.append(note + ", ".join(shown) + (", …)" if len(shown) < len(left_out) else ")"))
    return "\n".join(lines)


def _widths(columns: list[tuple[str, list[str]]]) -> list[int]:
    return [max(len(h), *(len(c) for c in cells)) for h, cells in columns]


def _width(columns: list[tuple[str, list[str]]]) -> int:
    return sum(_widths(columns)) + 2 * (len(columns) - 1) + 3  # two spaces apart, the " │ " after the params


def _text(columns: list[tuple[str, list[str]]], n_params: int) -> list[str]:
    widths = _widths(columns)
    split = 1 + n_params  # a bar between the params and the metrics

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < split else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return ("  ".join(parts[:split]) + " │ " + "  ".join(parts[split:])).rstrip()

    header = line([h for h, _ in columns])
    body = [line([cells[i] for _, cells in columns]) for i in range(len(columns[0][1]))]
    return [header, "─" * len(header), *body]


def _markdown(columns: list[tuple[str, list[str]]]) -> list[str]:
    out = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cells[i] for _, cells in columns) + " |" for i in range(len(columns[0][1]))]
    return out


def dvc() -> str:
    """This environment's dvc (beside its python), so that ``ddpm compare`` works from any shell."""
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")


def parser() -> argparse.ArgumentParser:
    """``ddpm compare``'s options (also the manual's reference page)."""
    parser = command_parser("ddpm compare", __doc__)
    parser.add_argument("experiments", nargs="*", help="experiment names to show (default: all)")
    parser.add_argument("-A", "--all-commits", action="store_true", help="experiments of every commit")
    parser.add_argument("--baseline", action="store_true", help="also the commits' and the workspace's rows")
    parser.add_argument("--md", action="store_true", help="Markdown, every differing param")
    parser.add_argument("--sort-by", default="FID_train", help="a summary metric (default FID_train)")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    show = [dvc(), "exp", "show", "--json", *(["-A"] if args.all_commits else [])]
    try:
        res = subprocess.run(show, capture_output=True, text=True)
    except OSError as err:
        print(f"error: ddpm compare: cannot run dvc ({err}); run it in the project's environment", file=sys.stderr)
        return 1
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        return res.returncode
    table = rows(json.loads(res.stdout), args.baseline)
    if args.experiments:
        unknown = sorted(set(args.experiments) - {row.name for row in table})
        if unknown:
            print(f"error: ddpm compare: no experiment named {', '.join(unknown)} (see dvc exp list)", file=sys.stderr)
            return 1
        table = [row for row in table if row.name in args.experiments]
    width = shutil.get_terminal_size((WIDTH, 24)).columns if sys.stdout.isatty() else WIDTH
    print(render(table, int(os.environ.get("COLUMNS", width)), args.md, args.sort_by))
    return 0
