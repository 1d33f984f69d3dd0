"""Stage fid_ref: Inception statistics of the training split (DDPM's FID reference) and of the test split."""

from ddpm.data.loader import iter_batches
from ddpm.evaluation import fid
from ddpm.runner.paths import require
from ddpm.runner.stage import Stopwatch, stage_main


def main(params, paths, run):
    require(paths.shards, "shards", "prepare")
    fid.verified_weights_path()
    for split, path in paths.fid_refs.items():
        with Stopwatch() as clock:
            count = fid.write_reference(path, iter_batches(paths.shards, split, params.fid.batch_size,
                                                           params.fid.max_images),
                                        feature_images=params.fid.feature_images, split=split)
        run.log_metrics({f"{split}_reference_images": count, f"{split}_seconds": clock.seconds})
        print(f"fid_ref: {count} {split} images in {clock.seconds:.0f}s → {path}")


if __name__ == "__main__":
    stage_main("fid_ref", main)
