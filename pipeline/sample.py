"""Stage sample: sample.num_samples images from the EMA model, in resumable chunks (Accelerate splits chunks)."""

from accelerate import Accelerator

from ddpm import sample_store
from ddpm.core.images import image_grid
from ddpm.factory import load_for_inference
from ddpm.runner.paths import require
from ddpm.runner.stage import stage_main
from ddpm.storage.files import write_png


def main(params, paths, run):
    accelerator = Accelerator()
    inference = load_for_inference(params, require(paths.model, "model", "train"), accelerator.device)
    done = sample_store.fill(paths.samples, inference, params, paths.model, accelerator)
    if done is None:  # not the main process
        return
    grid = image_grid(sample_store.load_samples(paths.samples), params.sample.grid_size)
    write_png(paths.sample_grid, grid)
    run.log_metrics(done.metrics(accelerator.num_processes))
    run.log_image(grid, "samples.png")
    print(f"sample: {done.generated} images generated in {done.seconds:.1f}s, {done.total - done.generated} reused "
          f"→ {paths.samples}")


if __name__ == "__main__":
    stage_main("sample", main)
