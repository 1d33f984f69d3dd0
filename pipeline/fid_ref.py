"""Stage fid_ref: Inception statistics of the training split (DDPM's FID reference) and of the test split."""

import time

from ddpm import fid
from ddpm.loader import iter_batches
from ddpm.stage import require, stage_main


def main(params, paths, run):
    require(paths.shards, "shards", "prepare")
    fid.verified_weights_path()
    for split, path in paths.fid_refs.items():
        start = time.perf_counter()
        features = fid.inception_features(iter_batches(paths.shards, split, params.fid.batch_size,
                                                       params.fid.max_images))
        fid.save_statistics(path, fid.statistics(features), features[: params.fid.feature_images],
                            count=features.shape[0], extractor=fid.EXTRACTOR_NAME, split=split)
        seconds = time.perf_counter() - start
        run.log_metrics({f"{split}_reference_images": features.shape[0], f"{split}_seconds": seconds})
        print(f"fid_ref: {features.shape[0]} {split} images in {seconds:.0f}s → {path}")


if __name__ == "__main__":
    stage_main("fid_ref", main)
