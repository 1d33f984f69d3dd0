"""Stage sample: draw sample.num_samples images with the configured sampler from the EMA model."""

import os
import time

import numpy as np
from PIL import Image

from ddpm.build import build_diffusion, check_model_matches
from ddpm.checkpoint import load_model
from ddpm.generate import generate, image_grid
from ddpm.stage import stage_main


def main(params, paths, run):
    model = load_model(paths.model)
    check_model_matches(params, model, paths.model)
    shape = (model.config.in_channels, params.data.resolution, params.data.resolution)
    start = time.perf_counter()
    images = generate(build_diffusion(params), model, params.sample, shape, params.seed)
    seconds = time.perf_counter() - start
    paths.samples.parent.mkdir(parents=True, exist_ok=True)
    tmp = paths.samples.with_name(paths.samples.name + ".tmp.npz")
    np.savez(tmp, images=images)
    os.replace(tmp, paths.samples)
    grid = image_grid(images, params.sample.grid_size)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(paths.sample_grid)
    run.log_metrics({"num_samples": len(images), "images_per_second": len(images) / seconds})
    run.log_image(grid, "samples.png")
    print(f"sample: {len(images)} images in {seconds:.1f}s → {paths.samples}")


if __name__ == "__main__":
    stage_main("sample", main)
