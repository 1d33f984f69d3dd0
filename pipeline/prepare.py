"""Stage prepare: dataset source → deterministic WebDataset shards + manifest."""

from ddpm.data.ingest import write_shards
from ddpm.data.shards import manifest_counts
from ddpm.stage.harness import Params, Paths, Run, exit_now, stage_main


def main(params: Params, paths: Paths, run: Run) -> None:
    manifest = write_shards(params, paths.shards)
    run.log_metrics(manifest_counts(manifest))
    run.log_json(manifest, "manifest.json")
    print(f"prepare: {manifest_counts(manifest)} → {paths.shards}")


if __name__ == "__main__":
    stage_main("prepare", main)
    exit_now()
