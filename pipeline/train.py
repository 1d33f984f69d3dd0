"""Stage train: fit the network on the shards (Accelerate), write the EMA weights; or, with model.import_from,
import a released checkpoint instead."""

from ddpm.importers.released import import_released
from ddpm.stage.harness import Params, Paths, Placement, Run, exit_now, stage_main
from ddpm.storage.files import file_digest, write_csv, write_json
from ddpm.tracking.lineage import log_inputs
from ddpm.training.loop import train


def main(params: Params, paths: Paths, run: Run, placement: Placement) -> None:
    if params.model.import_from.path is not None:
        metrics = import_released(params, paths.shards, paths.model)
        history: list[dict] = [{"step": 0, "loss": None}]
    else:
        log_inputs(run, paths.shards, "train", "training", url=params.data.shards_url)
        result = train(
            params, paths.shards, paths.model, paths.checkpoints, log=run.log_metrics, log_image=run.log_image
        )
        metrics, history = result.metrics(), result.history
        run.log_metrics({"resumed_from_step": result.resumed_from})
        run.set_tags({"ddpm.training_fingerprint": result.fingerprint, "ddpm.checkpoints": str(result.checkpoints)})
    if placement.is_main:
        write_json(paths.train_metrics, metrics | placement.summary())
        kind = f"L_{params.objective.value}, {params.schedule.value}"  # losses of different kinds never share an axis
        write_csv(paths.train_plot, [row | {"objective": kind} for row in history])
        run.log_metrics({"parameters": metrics["parameters"]})
        run.log_model(paths.model, paths.params_file, params.dataset.value, file_digest(paths.model))


if __name__ == "__main__":
    stage_main("train", main, compute=True)
    exit_now()
