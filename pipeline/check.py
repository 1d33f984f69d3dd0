"""Stage check: params.yaml, the files it names (a released checkpoint: read and fitted to the params), whether the
dataset's images can be had, and the global batch against the launcher's process count, checked before any other
stage runs. Every other stage depends on its output, whose bytes never change, so a bad value fails here, before
DVC removes any stage's outputs, and a good one reruns nothing; a refused `dvc exp run` leaves the workspace as it
was (``way_back``). It only reads: nothing is logged to MLflow."""

from pathlib import Path

from ddpm.config import check_named_files
from ddpm.data.sources import check_obtainable
from ddpm.stage.dvc_records import recorded
from ddpm.stage.harness import Params, Paths, Run, exit_now, stage_main
from ddpm.stage.launch import launched_processes
from ddpm.stage.way_back import put_back, remember_checked
from ddpm.storage.files import write_text

CHECKED = "params.yaml and the files it names passed the checks\n"
OUT = "outputs/checked.txt"


def main(params: Params, paths: Paths, run: Run) -> None:
    check_named_files(params)
    if not recorded("prepare", {OUT: CHECKED.encode()}):  # prepare will run: it must find its images
        check_obtainable(params)
    processes = launched_processes(params.launcher)
    if processes is not None:
        params.train.micro_batch(processes)  # the global batch splits over the launcher's processes
    if params.model.import_from.path is not None:
        from ddpm.importers.released import check_importable  # imports torch: only when there is a file to read

        check_importable(params, paths.shards)
    write_text(paths.checked, CHECKED)
    remember_checked(Path("params.yaml"))


if __name__ == "__main__":
    stage_main("check", main, tracked=False, on_refusal=lambda: put_back(Path("params.yaml"), Path(OUT), CHECKED))
    exit_now()
