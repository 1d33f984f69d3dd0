"""Stage evaluate: FID, KID, precision/recall (IS where its weights exist) of the samples; NLL and rate–distortion."""

from ddpm.data.loader import iter_batches
from ddpm.evaluation import fid, fidelity
from ddpm.evaluation.likelihood import likelihood_scores, rate_distortion_series
from ddpm.factory import load_for_inference
from ddpm.progress import rounded
from ddpm.sample_store import load_samples, sample_batches
from ddpm.stage.harness import Params, Paths, Placement, Run, exit_now, stage_main
from ddpm.stage.paths import require
from ddpm.storage.files import write_csv, write_json
from ddpm.tracking.lineage import log_inputs


def main(params: Params, paths: Paths, run: Run, placement: Placement) -> None:
    cfg, device, share = params.evaluate, placement.device, placement.share
    samples = sample_batches(require(paths.samples, "samples", "sample"), params.fid.batch_size, share)
    # Fail now, not after the samples' features, on a missing reference or weights or a corrupt test shard.
    shards, model = require(paths.shards, "shards", "prepare"), require(paths.model, "model", "train")
    test = iter_batches(shards, "test", cfg.nll_batch_size, cfg.nll_images, params.data.verify, share)
    if cfg.fid:
        fid.check_references(paths.fid_refs)
    inference = load_for_inference(params, model, device, precision=cfg.nll_precision, compile=cfg.compile)
    metrics = fidelity.image_scores(samples, lambda: load_samples(paths.samples), paths.fid_refs, params, device, share)
    nll, rows = likelihood_scores(inference.diffusion, inference.model, test, params.seed, device, share)
    if not placement.is_main:
        return
    metrics |= nll
    log_inputs(run, paths.shards, "test", "evaluation", paths.model, paths.fid_refs["train"] if cfg.fid else None)
    write_csv(paths.rd_plot, rows)
    run.log_series(rate_distortion_series(rows))
    run.log_metrics(metrics)
    run.log_table(rows, "rate_distortion.json")
    write_json(paths.eval_metrics, metrics | placement.summary())
    print(f"evaluate: {rounded(metrics)}")


if __name__ == "__main__":
    stage_main("evaluate", main, compute=True)
    exit_now()
