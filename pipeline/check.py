"""Stage check: params.yaml and the files it names, checked before any other stage runs. Every other stage
depends on its output, whose bytes never change, so a bad value fails here, before DVC removes any stage's
outputs, and a good one reruns nothing. It only reads: nothing is logged to MLflow."""

from ddpm.config import check_named_files
from ddpm.stage.harness import Params, Paths, Run, exit_now, stage_main
from ddpm.storage.files import write_text

CHECKED = "params.yaml and the files it names passed the checks\n"


def main(params: Params, paths: Paths, run: Run) -> None:
    check_named_files(params)
    write_text(paths.checked, CHECKED)


if __name__ == "__main__":
    stage_main("check", main, tracked=False)
    exit_now()
