"""Stage sample: sample.num_samples images from the EMA model, in resumable chunks (Accelerate splits chunks)."""

import time

from accelerate import Accelerator

from ddpm.build import build_diffusion, check_model_matches
from ddpm.checkpoint import load_model
from ddpm.fileio import atomic_write_png
from ddpm.generate import (
    clear_stale,
    image_grid,
    load_samples,
    sample_chunks,
    sample_fingerprint,
    write_manifest,
)
from ddpm.stage import require, stage_main


def main(params, paths, run):
    require(paths.model, "model", "train")
    accelerator = Accelerator()
    model = load_model(paths.model, accelerator.device)
    check_model_matches(params, model, paths.model)
    shape = (model.config.in_channels, params.data.resolution, params.data.resolution)
    fingerprint = sample_fingerprint(params, paths.model)
    if accelerator.is_main_process:
        clear_stale(paths.samples, fingerprint)
    accelerator.wait_for_everyone()
    start = time.perf_counter()
    written = sample_chunks(build_diffusion(params), model, params.sample, shape, params.seed, paths.samples,
                            accelerator.process_index, accelerator.num_processes, accelerator.device)
    seconds = time.perf_counter() - start
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    manifest = write_manifest(paths.samples, params.sample, fingerprint)
    images = load_samples(paths.samples)
    grid = image_grid(images, params.sample.grid_size)
    atomic_write_png(paths.sample_grid, grid)
    made = sum(c["count"] for c in manifest["chunks"] if c["name"] in written)
    run.log_metrics({"num_samples": len(images), "generated_now": made,
                     "images_per_second": made * accelerator.num_processes / max(seconds, 1e-9)})
    run.log_image(grid, "samples.png")
    print(f"sample: {made} images generated in {seconds:.1f}s, {len(images) - made} reused → {paths.samples}")


if __name__ == "__main__":
    stage_main("sample", main)
