"""The report: the results table (what was run and what it scored) and the papers' tables beside their published
numbers, as Markdown and CSV rows. Inputs are plain values; nothing here reads files or talks to MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ddpm.config import Params, flatten

from . import paper_tables
from .fid_reference import reference_digest
from .isc_weights import UNAVAILABLE as ISC_UNAVAILABLE


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _caveat(num_samples: int) -> str:
    text = paper_tables.sample_count_caveat(num_samples)
    return f"\n{text}\n" if text else ""


def _kid_section(title: str, table: str) -> str:
    """A KID table under its heading, with how to read it; nothing when no cell has a KID (older cells)."""
    if not table:
        return ""
    return (
        f"\n## {title}\n\n{table}\nKID (the unbiased MMD² of Inception features against the training split's "
        "reference) keeps no sample-count bias, so cells of equal sample counts compare by it. Its ± is the spread "
        "over 100 subsets; where a subset holds all of a cell's samples it reflects the reference side only, so "
        "it understates the uncertainty of a difference.\n"
    )


def results_table(params: Params, train: dict, evaluation: dict) -> str:
    sampler = paper_tables.sampler_setting(flatten(params.model_dump(mode="json")))
    if "isc" in evaluation:
        isc = f"{evaluation['isc']:.3g} ± {evaluation['isc_std']:.2g}"
    else:
        isc = ISC_UNAVAILABLE if params.evaluate.isc else "not requested"
    rows = [
        ("profile", params.profile),
        ("dataset", params.dataset.value),
        ("schedule / T", f"{params.schedule.value} / {params.timesteps}"),
        (
            "objective / mean / variance",
            f"{params.objective.value} / {params.mean_type.value} / {params.variance.value}",
        ),
        ("parameters", f"{train.get('parameters', 0) / 1e6:.2f}M"),
        *(
            [("weights", f"imported: {train['imported_from']} ({train['layout']} layout, {train['weights']})")]
            if "imported_from" in train
            else [
                ("train steps", _fmt(train.get("steps"))),
                (
                    f"final train loss (L_{params.objective.value}, {params.schedule.value})",
                    _fmt(train.get("final_loss")),
                ),
            ]
        ),
        ("sampler", sampler),
        ("samples", _fmt(evaluation.get("num_samples"))),
        ("FID (vs train / test)", f"{_fmt(evaluation.get('fid_train'))} / {_fmt(evaluation.get('fid_test'))}"),
        ("KID (vs train)", f"{_fmt(evaluation.get('kid'))} ± {_fmt(evaluation.get('kid_std'))}"),
        ("precision / recall (vs train)", f"{_fmt(evaluation.get('precision'))} / {_fmt(evaluation.get('recall'))}"),
        ("IS", isc),
        ("NLL test (bits/dim)", f"{_fmt(evaluation.get('nll_bpd'))} on {_fmt(evaluation.get('nll_images'))} images"),
        ("prior L_T (bits/dim)", _fmt(evaluation.get("prior_bpd"))),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["| " + "quantity".ljust(width) + " | value |", "|" + "-" * (width + 2) + "|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines) + (
        "\n\nTrain losses compare only between runs with the same objective and schedule "
        "(each schedule weights the steps differently).\n" + _caveat(int(evaluation.get("num_samples") or 0))
    )


# metrics/summary.json, the columns of `dvc exp show` and the metrics of the MLflow parent run: (source, key, name).
# The names differ from the detail files' keys, so DVC shows them unqualified (not "metrics/summary.json:fid_train").
HEADLINE = (
    ("evaluate", "fid_train", "FID_train"),
    ("evaluate", "fid_test", "FID_test"),
    ("evaluate", "nll_bpd", "NLL_bpd"),
    ("evaluate", "kid", "KID"),
    ("evaluate", "precision", "Prec"),
    ("evaluate", "recall", "Rec"),
    ("evaluate", "isc", "IS"),
    ("evaluate", "num_samples", "samples"),
    ("train", "steps", "train_steps"),
    ("train", "images_per_second", "img_per_s"),
)


def headline(train: dict, evaluation: dict) -> dict[str, float]:
    """The few numbers that compare runs at a glance (missing ones, such as IS without its weights, left out)."""
    source = {"train": train, "evaluate": evaluation}
    return {name: source[src][key] for src, key, name in HEADLINE if source[src].get(key) is not None}


@dataclass
class Report:
    results_md: str  # reports/results.md
    tables_md: str  # reports/paper_tables.md
    csv_rows: dict[str, list[dict]]  # file name → rows
    fid_vs_nfe: list[dict]  # sampler, nfe, network_calls, fid, fid_paper (plots/fid_vs_nfe.csv, the figure)
    summary: dict[str, float]  # metrics/summary.json: the headline numbers
    comparison: dict[str, str | None]  # what runs share with this one to compare (paper_tables.comparison_key)


def build_report(
    params: Params,
    train: dict,
    evaluation: dict,
    reconstruction: list[dict],
    cells: list[dict],
    records: list[paper_tables.Record],
    note: str = "",
    solver_cells: Sequence[dict] = (),
    fid_reference: Path | None = None,
    model_sha256: str = "",
) -> Report:
    """The run's results and the papers' tables. ``records`` are earlier evaluated runs (oldest first; this run is
    added last), ``cells`` the DDIM Table 1 cells, ``solver_cells`` the FID-vs-NFE cells, ``note`` a line to print
    above the tables, ``fid_reference`` the FID reference statistics this run was scored against: the tables'
    rows come only from runs comparable with this one (``paper_tables.COMPARABLE``). ``model_sha256``: the
    evaluated weights' digest; an earlier run that evaluated them the same way (a report rerun in another
    execution) is this run, not an older one."""
    if not cells:
        raise ValueError("metrics: no DDIM table cells; run the ddim_fid stages")
    reference = reference_digest(fid_reference) if fid_reference is not None else None
    flat = flatten(params.model_dump(mode="json")) | {"fid_reference": reference}
    current = paper_tables.Record(params=flat, metrics=evaluation, label="this run", model_sha256=model_sha256)
    key = paper_tables.comparison_key(flat)
    records = [r for r in records if not paper_tables.same_evaluation(r, current, key)] + [current]
    ddpm_md, ddpm_rows = paper_tables.ddpm_table(records, key)
    ddim_setting = paper_tables.ddim_table_setting(flat)
    published = ddim_setting == paper_tables.DDIM_TABLE_SETTING
    ddim_md, ddim_rows = paper_tables.ddim_table(cells, published)
    nfe_md, nfe_rows = paper_tables.fid_vs_nfe_table(list(solver_cells), cells, published)
    ddim_note = paper_tables.published_beside(ddim_setting, paper_tables.DDIM_TABLE_SETTING, "DDIM FIDs")
    iddpm_md, iddpm_rows = paper_tables.iddpm_table(records, key)
    recon_md = paper_tables.reconstruction_table(reconstruction)
    summary = results_table(params, train, evaluation)
    results_md = "# Results\n\n" + summary + "\n## DDIM Table 2: reconstruction error\n\n" + recon_md
    tables_md = (
        f"# The papers' tables ({params.dataset.value}, profile {params.profile})\n\n{note}"
        + paper_tables.comparability(flat)
        + "\nEach row of DDPM's and iDDPM's tables comes from the newest evaluated run in MLflow whose schedule, "
        "objective, prediction and variance match the row (DDPM's rows: the linear schedule). "
        + paper_tables.comparison_sentence(key)
        + "DDIM's tables and FID against NFE come from this run "
        f"({_fmt(train.get('steps'))} training steps).\n\n"
        "## DDPM Tables 1–2: IS, FID (vs train), NLL\n\n"
        + ddpm_md
        + f"\n## DDIM Table 1: FID, ours ({max(c['num_samples'] for c in cells)} samples per cell; {ddim_setting})"
        + (" with the paper's in brackets" if published else "")
        + "\n\n"
        + ddim_md
        + ddim_note
        + _caveat(max(c["num_samples"] for c in cells))
        + _kid_section("DDIM Table 1: KID × 10³ ± std", paper_tables.kid_table(None, cells))
        + f"\n## FID against network calls (NFE), ours ({params.solver_table.num_samples} samples per cell; DDIM's "
        "η = 0 row is Table 1's)"
        + (" with the paper's DDIM in brackets" if published else "")
        + "\n\n"
        + (
            f"{nfe_md}{_caveat(params.solver_table.num_samples)}\n![FID against NFE](fid_vs_nfe.png)\n"
            + _kid_section("KID × 10³ ± std against NFE", paper_tables.kid_table(list(solver_cells), cells))
            if nfe_rows
            else "No cells: list samplers in solver_table.samplers or η = 0 in ddim_table.etas.\n"
        )
        + "\n## DDIM Table 2: reconstruction MSE\n\n"
        + recon_md
        + "\n## iDDPM: schedule × objective (published values: iDDPM Tables 1–2, not bundled)\n\n"
        + iddpm_md
    )
    csv_rows = {
        "ddpm_table.csv": ddpm_rows,
        "ddim_table1.csv": ddim_rows,
        "ddim_table2.csv": reconstruction,
        "iddpm_table.csv": iddpm_rows,
    }
    if nfe_rows:
        csv_rows["fid_vs_nfe.csv"] = nfe_rows
    return Report(results_md, tables_md, csv_rows, nfe_rows, headline(train, evaluation), key)
