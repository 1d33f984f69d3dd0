"""Stage figures: the papers' qualitative figures, DDIM Table 2's reconstruction errors and the RD curve (on the
first process's device; the others wait)."""

from ddpm.core.images import to_model_range
from ddpm.data.loader import first_batch
from ddpm.evaluation.likelihood import read_rate_distortion
from ddpm.evaluation.paper_figures import paper_figures, reconstruction_metrics
from ddpm.factory import load_for_inference
from ddpm.stage.harness import Params, Paths, Placement, Run, exit_now, stage_main
from ddpm.stage.paths import require
from ddpm.storage.files import write_json, write_png


def main(params: Params, paths: Paths, run: Run, placement: Placement) -> None:
    cfg = params.figures
    require(paths.shards, "shards", "prepare")
    rd_rows = read_rate_distortion(require(paths.rd_plot, "rate-distortion table", "evaluate"))
    if not placement.is_main:
        return
    inference = load_for_inference(params, require(paths.model, "model", "train"), placement.device)
    test = to_model_range(first_batch(paths.shards, "test", cfg.reconstruction_images, params.data.verify))
    images, table = paper_figures(inference, test, cfg, rd_rows, params.seed)
    for name, image in images.items():
        write_png(paths.figures / f"{name}.png", image)
        run.log_artifact(paths.figures / f"{name}.png", "figures")
    metrics = reconstruction_metrics(table)
    write_json(
        paths.reconstruction_metrics, {"images": int(test.shape[0]), "table": table, **metrics, **placement.summary()}
    )
    run.log_metrics(metrics)
    print(f"figures: {len(table)} reconstruction rows, figures in {paths.figures}")


if __name__ == "__main__":
    stage_main("figures", main, compute=True)
    exit_now()
