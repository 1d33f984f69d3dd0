"""The papers' grid tables (DDPM Table 2, iDDPM's schedule × objective) as grids of DVC experiments: the queue
commands of a table's rows (validated before anything is queued), and the table built from the evaluated runs
in MLflow, every row from the latest run of the setting (dataset, profile) whose params match it, whichever queue
worker ran it. scripts/table.sh runs both around `dvc queue start`.

    python -m ddpm.runner.tables iddpm --commands -S profile=tiny   # the `dvc exp run --queue` lines
    python -m ddpm.runner.tables iddpm -S profile=tiny [--out tables/iddpm.md]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from ddpm.config import ParamsError, compose, flatten, validate_params
from ddpm.evaluation import paper_tables
from ddpm.storage.files import write_text

from .queries import evaluated_runs

TABLES = {"ddpm": ("DDPM Table 2: IS, FID (vs train), NLL", paper_tables.ddpm_table),
          "iddpm": ("iDDPM: schedule × objective", paper_tables.iddpm_table)}

# Each table's rows as groups of Hydra sweeps (one `dvc exp run --queue` each: key → values, a choice() when
# several); the groups' union is the table's rows (pairs that are not a product, such as objective and variance,
# get a group each).
GRIDS = {
    "ddpm": [  # prediction {μ̃, ε} × {L with learned Σ, L with fixed Σ, the simple loss}, DDPM's linear schedule;
        # a μ̃-predicting model gives no probability-flow ODE: its FID-vs-NFE cells use the ancestral sampler
        {"schedule": ["linear"], "mean_type": ["mu"], "objective": ["kl"], "variance": ["learned", "fixed_large"],
         "solver_table.samplers": ["[ancestral]"]},
        {"schedule": ["linear"], "mean_type": ["mu"], "objective": ["simple"], "variance": ["fixed_large"],
         "solver_table.samplers": ["[ancestral]"]},
        {"schedule": ["linear"], "mean_type": ["eps"], "objective": ["kl"], "variance": ["learned", "fixed_large"]},
        {"schedule": ["linear"], "mean_type": ["eps"], "objective": ["simple"], "variance": ["fixed_large"]},
    ],
    "iddpm": [  # L_simple keeps σ² = β; L_hybrid and L_vlb learn the variance (iDDPM §3)
        {"schedule": ["linear", "cosine"], "objective": ["simple"], "variance": ["fixed_large"]},
        {"schedule": ["linear", "cosine"], "objective": ["hybrid", "vlb"], "variance": ["learned_range"]},
    ],
}


def queue_commands(name: str, overrides: list[str], conf_dir: Path = Path("conf")) -> list[list[str]]:
    """The ``dvc exp run --queue`` argument lists of table ``name``'s rows with ``overrides`` (``key=value``) added
    to each; every row's params are validated first, so a bad combination fails before anything is queued."""
    commands = []
    for group in GRIDS[name]:
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
    runs, note = evaluated_runs(params["dataset"])
    records = [paper_tables.Record(**r) for r in runs]
    title, build = TABLES[name]
    key = paper_tables.comparison_key(params)  # any FID reference: the grid's runs name theirs
    table, _ = build(records, key)
    return (f"# {title} ({params['dataset']}, profile {params['profile']})\n\n{note}"
            + paper_tables.comparability(params) + paper_tables.comparison_sentence(key) + "\n" + table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpm.runner.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("-S", "--set-param", action="append", default=[], dest="overrides",
                        help="as dvc exp run -S: the setting's profile and dataset, e.g. profile=tiny")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--commands", action="store_true", help="print the queue commands of the table's rows")
    args = parser.parse_args(argv)
    try:
        if args.commands:
            print("\n".join(" ".join(cmd) for cmd in queue_commands(args.table, args.overrides)))
            return 0
        text = grid_table(args.table, args.overrides)
    except Exception as err:  # noqa: BLE001 - params or Hydra: one line
        print(f"error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
