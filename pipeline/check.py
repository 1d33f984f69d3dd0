"""Stage check: params.yaml, the files it names (a released checkpoint: read and fitted to the params), and the
global batch against the launcher's process count, checked before any other stage runs. Every other stage
depends on its output, whose bytes never change, so a bad value fails here, before DVC removes any stage's
outputs, and a good one reruns nothing. It only reads: nothing is logged to MLflow."""

from ddpm.config import check_named_files
from ddpm.stage.harness import Params, Paths, Run, exit_now, stage_main
from ddpm.stage.launch import launched_processes
from ddpm.storage.files import write_text

CHECKED = "params.yaml and the files it names passed the checks\n"


def main(params: Params, paths: Paths, run: Run) -> None:
    check_named_files(params)
    processes = launched_processes(params.launcher)
    if processes is not None:
        params.train.micro_batch(processes)  # the global batch splits over the launcher's processes
    if params.model.import_from.path is not None:
        from ddpm.importers.released import check_importable  # imports torch: only when there is a file to read

        check_importable(params, paths.shards)
    write_text(paths.checked, CHECKED)


if __name__ == "__main__":
    stage_main("check", main, tracked=False)
    exit_now()
