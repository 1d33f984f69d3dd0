"""Stage evaluate: FID, KID, precision/recall (and IS where its weights exist) of the samples; NLL bits/dim
and rate–distortion."""

import time

import torch

from ddpm import fid
from ddpm.build import build_diffusion, check_model_matches
from ddpm.checkpoint import load_model
from ddpm.evaluation import nll_bpd, rate_distortion
from ddpm.generate import load_samples
from ddpm.loader import iter_batches
from ddpm.stage import require, stage_main, write_csv, write_json


def main(params, paths, run):
    cfg = params.evaluate
    require(paths.samples, "samples", "sample")
    require(paths.model, "model", "train")
    require(paths.shards, "shards", "prepare")
    if cfg.fid:
        for path in paths.fid_refs.values():
            require(path, "FID reference statistics", "fid_ref")
        fid.load_features(paths.fid_refs["train"])  # fails now, not after the samples' features, if missing
        fid.verified_weights_path()
    model = load_model(paths.model)
    check_model_matches(params, model, paths.model)
    images = load_samples(paths.samples)
    metrics = {"num_samples": int(len(images))}
    if cfg.fid:
        start = time.perf_counter()
        features = fid.inception_features(fid.to_uint8_rgb_batches(images, params.fid.batch_size))
        stats = fid.statistics(features)
        for split, path in paths.fid_refs.items():
            metrics[f"fid_{split}"] = fid.frechet_distance(stats, fid.load_statistics(path))
        metrics["fid_seconds"] = time.perf_counter() - start
        # KID and precision/recall against the training split (the FID reference of DDPM and iDDPM).
        metrics.update(fid.kid_precision_recall(features, fid.load_features(paths.fid_refs["train"]),
                                                params.fid.kid_subset_size, params.seed))
    if cfg.isc:
        weights = fid.isc_weights_path(cfg.isc_weights)
        if weights is None:
            print(f"evaluate: IS {fid.ISC_UNAVAILABLE}")
        else:
            metrics.update(fid.inception_score(torch.from_numpy(images).permute(0, 3, 1, 2), weights))
    run.log_metrics(metrics)

    start = time.perf_counter()
    nll = nll_bpd(build_diffusion(params), model,
                  iter_batches(paths.shards, "test", cfg.nll_batch_size, cfg.nll_images), params.seed)
    metrics.update({"nll_bpd": nll["total_bpd"], "prior_bpd": nll["prior_bpd"], "nll_images": nll["count"],
                    "nll_seconds": time.perf_counter() - start})
    rows = rate_distortion(nll["prior_bpd"], nll["vb"], nll["xstart_mse"])
    write_csv(paths.rd_plot, rows)
    run.log_series({"rd_rate_bpd": [r["rate_bpd"] for r in rows],
                    "rd_distortion_rmse": [r["distortion_rmse"] for r in rows],
                    "nll_term_bpd": [r["term_bpd"] for r in rows[:-1]]})  # L_{t-1}, in the order t = T..1
    run.log_metrics({k: metrics[k] for k in ("nll_bpd", "prior_bpd")})
    run.log_table(rows, "rate_distortion.json")
    write_json(paths.eval_metrics, metrics)
    print(f"evaluate: {metrics}")


if __name__ == "__main__":
    stage_main("evaluate", main)
