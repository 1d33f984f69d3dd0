"""Stage report: the results table (Markdown), printed and logged."""

import json

from ddpm.fileio import atomic_write_text
from ddpm.report import results_table
from ddpm.stage import require, stage_main


def main(params, paths, run):
    require(paths.train_metrics, "metrics", "train")
    require(paths.eval_metrics, "metrics", "evaluate")
    train = json.loads(paths.train_metrics.read_text())
    evaluation = json.loads(paths.eval_metrics.read_text())
    table = results_table(params, train, evaluation)
    atomic_write_text(paths.report, "# Results\n\n" + table)
    run.log_artifact(paths.report)
    print(table)


if __name__ == "__main__":
    stage_main("report", main)
