"""Stage sample: sample.num_samples images from the EMA model, in resumable chunks split over the processes."""

from ddpm import sample_store
from ddpm.core.images import image_grid
from ddpm.factory import load_for_inference
from ddpm.stage.harness import Params, Paths, Placement, Run, exit_now, stage_main
from ddpm.stage.paths import require
from ddpm.storage.files import write_json, write_png


def main(params: Params, paths: Paths, run: Run, placement: Placement) -> None:
    cfg = params.sample
    inference = load_for_inference(
        params, require(paths.model, "model", "train"), placement.device, precision=cfg.precision, compile=cfg.compile
    )
    done = sample_store.fill(paths.samples, inference, params, paths.model, placement.share)
    if done is None:  # not the main process
        return
    grid = image_grid(sample_store.load_samples(paths.samples), cfg.grid_size)
    write_png(paths.sample_grid, grid)
    metrics = done.metrics(placement.share.world)
    write_json(paths.sample_metrics, metrics | placement.summary())
    run.log_metrics(metrics)
    run.log_image(grid, "samples.png")
    print(
        f"sample: {done.generated} images generated in {done.seconds:.1f}s, {done.total - done.generated} reused "
        f"→ {paths.samples}"
    )


if __name__ == "__main__":
    stage_main("sample", main, compute=True)
    exit_now()
