"""Stage fid_ref: Inception statistics of the training split (DDPM's FID reference)."""

import time

from ddpm import fid
from ddpm.loader import iter_batches
from ddpm.stage import stage_main


def main(params, paths, run):
    fid.verified_weights_path()
    start = time.perf_counter()
    batches = iter_batches(paths.shards, "train", params.fid.batch_size, params.fid.max_images)
    features = fid.inception_features(batches)
    stats = fid.statistics(features)
    fid.save_statistics(paths.fid_ref, stats, count=features.shape[0], extractor=fid.EXTRACTOR_NAME, split="train")
    seconds = time.perf_counter() - start
    run.log_metrics({"reference_images": features.shape[0], "seconds": seconds})
    print(f"fid_ref: {features.shape[0]} training images in {seconds:.0f}s → {paths.fid_ref}")


if __name__ == "__main__":
    stage_main("fid_ref", main)
