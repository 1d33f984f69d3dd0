"""Stage fid_ref: Inception statistics of the training split (DDPM's FID reference) and of the test split."""

from ddpm.data.loader import iter_batches
from ddpm.evaluation import fid
from ddpm.stage.harness import Params, Paths, Placement, Run, Stopwatch, exit_now, stage_main
from ddpm.stage.paths import require
from ddpm.storage.files import write_json


def main(params: Params, paths: Paths, run: Run, placement: Placement) -> None:
    require(paths.shards, "shards", "prepare")
    fid.verified_weights_path()
    batches = {
        split: iter_batches(
            paths.shards, split, params.fid.batch_size, params.fid.max_images, params.data.verify, placement.share
        )
        for split in paths.fid_refs
    }  # every shard checked now
    metrics: dict[str, float] = {}
    for split, path in paths.fid_refs.items():
        with Stopwatch() as clock:
            count = fid.write_reference(
                path,
                batches[split],
                feature_images=params.fid.feature_images,
                split=split,
                device=placement.device,
                share=placement.share,
            )
        metrics |= {f"{split}_reference_images": count, f"{split}_seconds": clock.seconds}
        if placement.is_main:
            print(f"fid_ref: {count} {split} images in {clock.seconds:.0f}s → {path}")
    if placement.is_main:
        write_json(paths.fid_ref_metrics, metrics | placement.summary())
        run.log_metrics(metrics)


if __name__ == "__main__":
    stage_main("fid_ref", main, compute=True)
    exit_now()
