"""Stage prepare: dataset source → deterministic WebDataset shards + manifest."""

from ddpm.datasets import SPLITS, check_source, iter_split, source_fingerprint
from ddpm.shards import write_dataset
from ddpm.stage import stage_main


def main(params, paths, run):
    check_source(params)
    meta = {"dataset": params.dataset.value, "resolution": params.data.resolution,
            "source_fingerprint": source_fingerprint(params)}
    skipped: dict[str, list[str]] = {}
    manifest = write_dataset({s: iter_split(params, s, skipped) for s in SPLITS}, paths.shards,
                             params.data.shard_size, meta, skipped)
    counts = {f"{s}_images": manifest["splits"][s]["count"] for s in SPLITS}
    counts |= {f"{s}_shards": len(manifest["splits"][s]["shards"]) for s in SPLITS}
    counts |= {f"{s}_skipped": manifest["splits"][s]["skipped"]["count"] for s in SPLITS}
    run.log_metrics(counts)
    run.log_json(manifest, "manifest.json")
    print(f"prepare: {counts} → {paths.shards}")


if __name__ == "__main__":
    stage_main("prepare", main)
