"""Stage report: the run's results and the papers' tables beside their published numbers (Markdown and CSV)."""

import json

from ddpm import paper_tables
from ddpm.fileio import atomic_write_text
from ddpm.report import results_table
from ddpm.stage import require, stage_main, write_csv


def previous_runs(experiment: str) -> tuple[list[paper_tables.Record], str]:
    """Evaluated runs recorded in MLflow (every experiment so far), or none if the store cannot be read."""
    from ddpm.tracking import evaluated_runs

    try:
        return [paper_tables.Record(**r) for r in evaluated_runs(experiment)], ""
    except Exception as err:  # noqa: BLE001 - a dead tracking server must not stop the report
        return [], f"(MLflow runs unavailable: {type(err).__name__}; these tables hold this run only)\n\n"


def main(params, paths, run):
    for path, producer in ((paths.train_metrics, "train"), (paths.eval_metrics, "evaluate"),
                           (paths.reconstruction_metrics, "figures")):
        require(path, "metrics", producer)
    train = json.loads(paths.train_metrics.read_text())
    evaluation = json.loads(paths.eval_metrics.read_text())
    reconstruction = json.loads(paths.reconstruction_metrics.read_text())["table"]
    cells = [json.loads(p.read_text()) for p in sorted(paths.ddim_table.glob("*.json"))]
    if not cells:
        raise FileNotFoundError(f"metrics: no DDIM table cells in {paths.ddim_table}; run the ddim_fid stages")

    current = paper_tables.Record(params=params.model_dump(mode="json"), metrics=evaluation, label="this run")
    records, note = previous_runs(f"ddpm-{params.dataset.value}")
    records.append(current)
    ddpm_md, ddpm_rows = paper_tables.ddpm_table(records)
    ddim_md, ddim_rows = paper_tables.ddim_table(cells)
    iddpm_md, iddpm_rows = paper_tables.iddpm_table(records)
    recon_md = paper_tables.reconstruction_table(reconstruction)

    summary = results_table(params, train, evaluation)
    atomic_write_text(paths.report, "# Results\n\n" + summary + "\n## DDIM Table 2: reconstruction error\n\n"
                      + recon_md)
    tables = (
        f"# The papers' tables ({params.dataset.value}, profile {params.profile})\n\n{note}"
        "Published numbers are CIFAR10 at full scale; runs of other datasets or profiles are not comparable "
        "to them. Rows come from the latest evaluated run with those params in MLflow.\n\n"
        "## DDPM Tables 1–2: IS, FID (vs train), NLL\n\n" + ddpm_md
        + f"\n## DDIM Table 1: FID, ours ({max(c['num_samples'] for c in cells)} samples per cell) with the paper's in "
          "brackets\n\n" + ddim_md
        + "\n## DDIM Table 2: reconstruction MSE\n\n" + recon_md
        + "\n## iDDPM: schedule × objective (published values: iDDPM Tables 1–2, not bundled)\n\n" + iddpm_md
    )
    atomic_write_text(paths.paper_tables, tables)
    for name, rows in (("ddpm_table.csv", ddpm_rows), ("ddim_table1.csv", ddim_rows),
                       ("ddim_table2.csv", reconstruction), ("iddpm_table.csv", iddpm_rows)):
        write_csv(paths.report.parent / name, rows)
        run.log_table(rows, name.replace(".csv", ".json"))
    run.log_artifact(paths.report)
    run.log_artifact(paths.paper_tables)
    print(summary + "\n" + tables)


if __name__ == "__main__":
    stage_main("report", main)
