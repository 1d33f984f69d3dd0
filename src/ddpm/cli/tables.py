"""The papers' grid tables (DDPM Table 2, iDDPM's schedule × objective) as grids of DVC experiments: the queue
commands of a table's rows (validated before anything is queued), and the table built from the evaluated runs
in MLflow, every row from the latest run of the setting (dataset, profile) whose params match it, whichever queue
worker ran it. scripts/table.sh runs both around `dvc queue start`.

    ddpm table iddpm --commands -S profile=tiny   # the `dvc exp run --queue` lines
    ddpm table iddpm -S profile=tiny [--out tables/iddpm.md]
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from pathlib import Path

from ddpm.config import ParamsError, compose, flatten, validate_params
from ddpm.evaluation import paper_tables
from ddpm.storage.files import write_text
from ddpm.tracking.queries import evaluated_runs

from . import command_parser

TABLES = {
    "ddpm": ("DDPM Table 2: IS, FID (vs train), NLL", paper_tables.DDPM_ROWS, paper_tables.ddpm_table),
    "iddpm": ("iDDPM: schedule × objective", paper_tables.IDDPM_ROWS, paper_tables.iddpm_table),
}


def sweeps(rows: tuple[paper_tables.TableRow, ...]) -> list[dict[str, list[str]]]:
    """A table's rows as few Hydra sweeps (key → values, a ``choice()`` when several) whose products are exactly
    the rows: two groups that differ in one key's values become one."""
    groups = [{k: [v] for k, v in {**row.params, **row.queue_only}.items()} for row in rows]
    merged = True
    while merged:
        merged = False
        for a, b in itertools.combinations(groups, 2):
            differ = [k for k in a if a[k] != b.get(k)]
            if a.keys() == b.keys() and len(differ) == 1:
                a[differ[0]] = a[differ[0]] + b[differ[0]]
                groups.remove(b)
                merged = True
                break
    return groups


def queue_commands(name: str, overrides: list[str], conf_dir: Path = Path("conf")) -> list[list[str]]:
    """The ``dvc exp run --queue`` argument lists of table ``name``'s rows with ``overrides`` (``key=value``) added
    to each; every row's params are validated first, so a bad combination fails before anything is queued."""
    commands = []
    for group in sweeps(TABLES[name][1]):
        for values in itertools.product(*group.values()):
            row = [f"{k}={v}" for k, v in zip(group, values, strict=True)]
            try:
                validate_params(compose([*row, *overrides], conf_dir))
            except Exception as err:  # noqa: BLE001 - params or Hydra: one line naming the row
                raise ParamsError(f"table {name}, row {' '.join(row + overrides)}: {err}") from None
        sweep = [f"{k}=choice({','.join(v)})" if len(v) > 1 else f"{k}={v[0]}" for k, v in group.items()]
        commands.append(["dvc", "exp", "run", "--queue", *(a for kv in sweep + overrides for a in ("-S", kv))])
    return commands


def grid_table(name: str, overrides: list[str], conf_dir: Path = Path("conf")) -> str:
    """Table ``name`` for the setting that ``overrides`` (as given to ``dvc exp run -S``) compose, in Markdown."""
    params = flatten(validate_params(compose(overrides, conf_dir)).model_dump(mode="json"))
    runs, note = evaluated_runs(str(params["dataset"]))
    records = [paper_tables.Record(**r) for r in runs]
    title, _, build = TABLES[name]
    key = paper_tables.comparison_key(params)  # any FID reference: the grid's runs name theirs
    table, _ = build(records, key)
    return (
        f"# {title} ({params['dataset']}, profile {params['profile']})\n\n{note}"
        + paper_tables.comparability(params)
        + paper_tables.comparison_sentence(key)
        + "\n"
        + table
    )


def parser() -> argparse.ArgumentParser:
    """``ddpm table``'s options (also the manual's reference page)."""
    parser = command_parser("ddpm table", __doc__)
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        dest="overrides",
        help="as dvc exp run -S: the setting's profile and dataset, e.g. profile=tiny",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--commands", action="store_true", help="print the rows' queue commands, shell-quoted")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if args.commands:
            print("\n".join(shlex.join(cmd) for cmd in queue_commands(args.table, args.overrides)))
            return 0
        text = grid_table(args.table, args.overrides)
    except Exception as err:  # noqa: BLE001 - params or Hydra: one line
        print(f"error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0
