"""Stage report: the run's results and the papers' tables beside their published numbers (Markdown and CSV)."""

from ddpm.evaluation.paper_tables import Record
from ddpm.evaluation.plots import fid_vs_nfe_figure
from ddpm.evaluation.results import build_report
from ddpm.stage.harness import Params, Paths, Run, exit_now, stage_main
from ddpm.stage.paths import require
from ddpm.storage.files import file_digest, read_json, write_csv, write_json, write_png, write_text
from ddpm.tracking.queries import evaluated_runs, promote_best_model


def main(params: Params, paths: Paths, run: Run) -> None:
    train = read_json(require(paths.train_metrics, "metrics", "train"))
    evaluation = read_json(require(paths.eval_metrics, "metrics", "evaluate"))
    reconstruction = read_json(require(paths.reconstruction_metrics, "metrics", "figures"))["table"]
    tables = (paths.ddim_table, paths.solver_table)
    cells, solver_cells = ([read_json(p) for p in sorted(d.glob("*.json"))] for d in tables)
    runs, note = evaluated_runs(params.dataset.value, leave_out=run.pipeline_run_id)  # this run: added as such
    inputs = (train, evaluation, reconstruction, cells, [Record(**r) for r in runs], note, solver_cells)
    report = build_report(params, *inputs, fid_reference=paths.fid_refs["train"], model_sha256=file_digest(paths.model))
    write_text(paths.report, report.results_md)
    write_text(paths.paper_tables, report.tables_md)
    for name, rows in report.csv_rows.items():
        write_csv(paths.reports / name, rows)
        run.log_table(rows, name.replace(".csv", ".json"))
    write_json(paths.summary_metrics, report.summary)
    run.log_summary(report.summary)  # also on the pipeline's parent run
    write_csv(paths.fid_vs_nfe_plot, report.fid_vs_nfe, columns=["sampler", "nfe", "network_calls", "fid"])
    if report.fid_vs_nfe:
        write_png(paths.reports / "fid_vs_nfe.png", fid_vs_nfe_figure(report.fid_vs_nfe))
        run.log_artifact(paths.reports / "fid_vs_nfe.png")
    run.log_artifact(paths.report)
    run.log_artifact(paths.paper_tables)
    print(report.results_md + "\n" + report.tables_md)
    print(f"report: {promote_best_model(params.dataset.value, report.comparison)}")


if __name__ == "__main__":
    stage_main("report", main)
    exit_now()
