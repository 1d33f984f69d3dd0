"""Stage report: the results table (Markdown), printed and logged."""

import json
import os

from ddpm.report import results_table
from ddpm.stage import require, stage_main


def main(params, paths, run):
    require(paths.train_metrics, "metrics", "train")
    require(paths.eval_metrics, "metrics", "evaluate")
    train = json.loads(paths.train_metrics.read_text())
    evaluation = json.loads(paths.eval_metrics.read_text())
    table = results_table(params, train, evaluation)
    paths.report.parent.mkdir(parents=True, exist_ok=True)
    tmp = paths.report.with_name(paths.report.name + ".tmp")
    tmp.write_text("# Results\n\n" + table)
    os.replace(tmp, paths.report)
    run.log_artifact(paths.report)
    print(table)


if __name__ == "__main__":
    stage_main("report", main)
