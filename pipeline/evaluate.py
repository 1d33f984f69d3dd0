"""Stage evaluate: FID, KID, precision/recall (and IS where its weights exist) of the samples; NLL bits/dim
and rate–distortion."""

from ddpm.data.loader import iter_batches
from ddpm.evaluation import fid
from ddpm.evaluation.likelihood import likelihood_scores, rate_distortion_series
from ddpm.evaluation.names import ISC_UNAVAILABLE
from ddpm.factory import load_for_inference
from ddpm.runner.paths import require
from ddpm.runner.stage import stage_main
from ddpm.sample_store import load_samples
from ddpm.storage.files import write_csv, write_json


def main(params, paths, run):
    cfg = params.evaluate
    require(paths.samples, "samples", "sample")
    require(paths.shards, "shards", "prepare")
    if cfg.fid:  # fail now, not after the samples' features, if a reference or the weights are missing
        fid.check_references(paths.fid_refs)
    inference = load_for_inference(params, require(paths.model, "model", "train"), "cpu")
    metrics = fid.image_scores(load_samples(paths.samples), paths.fid_refs, params)
    if cfg.isc and "isc" not in metrics:
        print(f"evaluate: IS {ISC_UNAVAILABLE}")
    run.log_metrics(metrics)
    nll, rows = likelihood_scores(inference.diffusion, inference.model,
                                  iter_batches(paths.shards, "test", cfg.nll_batch_size, cfg.nll_images), params.seed)
    metrics |= nll
    write_csv(paths.rd_plot, rows)
    run.log_series(rate_distortion_series(rows))
    run.log_metrics(nll)
    run.log_table(rows, "rate_distortion.json")
    write_json(paths.eval_metrics, metrics)
    print(f"evaluate: {metrics}")


if __name__ == "__main__":
    stage_main("evaluate", main)
