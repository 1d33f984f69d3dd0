"""Stage figures: the papers' qualitative figures, DDIM Table 2's reconstruction errors and the RD curve."""

import csv

import torch

from ddpm import figures
from ddpm.build import build_diffusion, check_model_matches
from ddpm.checkpoint import load_model
from ddpm.fileio import atomic_write_png
from ddpm.loader import iter_batches, to_model_range
from ddpm.plotting import rate_distortion_figure
from ddpm.stage import require, stage_main, write_json


def save(image, path, run):
    atomic_write_png(path, image)
    run.log_artifact(path, "figures")


def main(params, paths, run):
    cfg = params.figures
    require(paths.model, "model", "train")
    require(paths.shards, "shards", "prepare")
    require(paths.rd_plot, "rate-distortion table", "evaluate")
    model = load_model(paths.model)
    check_model_matches(params, model, paths.model)
    diffusion = build_diffusion(params)
    T = diffusion.num_timesteps
    shape = (model.config.in_channels, params.data.resolution, params.data.resolution)
    test = to_model_range(next(iter(iter_batches(paths.shards, "test", cfg.reconstruction_images))))
    if test.shape[0] < 2:
        raise ValueError(f"figures: the test split has {test.shape[0]} image(s); interpolation needs 2")
    gen = torch.Generator().manual_seed(params.seed)
    latent_steps = figures.latent_timesteps(T, cfg.latent_fractions)
    out = paths.figures
    save(figures.progressive_generation(diffusion, model, shape, cfg.images, cfg.frames, gen),
         out / "progressive.png", run)
    save(figures.shared_latent_samples(diffusion, model, test[:1], latent_steps, cfg.per_latent, gen),
         out / "shared_latent.png", run)
    save(figures.ddpm_interpolations(diffusion, model, test[:1], test[1:2], latent_steps, cfg.interpolation_points,
                                     gen), out / "ddpm_interpolation.png", run)
    save(figures.ddim_interpolations(diffusion, model, shape, 4, cfg.interpolation_points, cfg.ddim_steps, gen),
         out / "ddim_interpolation.png", run)
    steps = [s for s in cfg.reconstruction_steps if s <= T]
    table, image = figures.ddim_reconstructions(diffusion, model, test, steps)
    save(image, out / "ddim_reconstruction.png", run)
    with open(paths.rd_plot) as f:
        rd_rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    save(rate_distortion_figure(rd_rows), out / "rate_distortion.png", run)
    metrics = {f"reconstruction_mse_S{row['steps']}": row["mse"] for row in table}
    write_json(paths.reconstruction_metrics, {"images": int(test.shape[0]), "table": table, **metrics})
    run.log_metrics(metrics)
    print(f"figures: {len(table)} reconstruction rows, figures in {out}")


if __name__ == "__main__":
    stage_main("figures", main)
