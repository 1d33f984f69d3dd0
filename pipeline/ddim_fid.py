"""Stage ddim_fid@S-η (a DVC matrix cell): FID of DDIM samples with S steps and this η (DDIM Table 1); samples
and their Inception features are split over the processes.

Usage: python pipeline/ddim_fid.py STEPS ETA   (ETA a number in [0, 1] or sigma_hat)
"""

import sys

from ddpm.evaluation.fid_cells import cell_network, ddim_cell, not_applicable, parse_cell
from ddpm.progress import rounded
from ddpm.stage.harness import Params, Paths, Placement, Run, exit_now, stage_main
from ddpm.stage.paths import require
from ddpm.storage.files import write_json


def main(params: Params, paths: Paths, run: Run, placement: Placement) -> None:
    steps, eta = parse_cell(sys.argv[1:])
    out = paths.ddim_cell(*sys.argv[1:])  # named as dvc.yaml's matrix names it
    result = not_applicable(steps, params.timesteps, steps=steps, eta=eta)
    if result is None:
        reference = require(paths.fid_refs["train"], "FID reference statistics", "fid_ref")
        inference = cell_network(params, require(paths.model, "model", "train"), placement.device)
        result = ddim_cell(inference, params, steps, eta, reference, placement.share)
        run.log_metrics({"fid": result["fid"], "steps": steps, "sampling_seconds": result["sampling_seconds"]})
    if placement.is_main:
        write_json(out, result | placement.summary())
        print(f"ddim_fid: S={steps} η={eta}: {rounded(result)}")


if __name__ == "__main__":
    stage_main("ddim_fid", main, compute=True)
    exit_now()
