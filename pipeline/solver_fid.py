"""Stage solver_fid@SAMPLER-NFE (a DVC matrix cell): FID of samples drawn with NFE network calls each by one
sampler (the FID-vs-NFE table); samples and their Inception features are split over the processes.

Usage: python pipeline/solver_fid.py SAMPLER NFE
"""

import sys

from ddpm.core.options import ODE_SOLVERS
from ddpm.evaluation.fid_cells import cell_network, not_applicable, parse_solver_cell, solver_cell
from ddpm.progress import rounded
from ddpm.stage.harness import Params, Paths, Placement, Run, exit_now, stage_main
from ddpm.stage.paths import require
from ddpm.storage.files import write_json


def main(params: Params, paths: Paths, run: Run, placement: Placement) -> None:
    sampler, nfe = parse_solver_cell(sys.argv[1:])
    bounded = sampler not in ODE_SOLVERS  # ddim and ancestral take at most T steps
    result = not_applicable(nfe, params.timesteps, sampler=str(sampler), nfe=nfe) if bounded else None
    if result is None:
        reference = require(paths.fid_refs["train"], "FID reference statistics", "fid_ref")
        inference = cell_network(params, require(paths.model, "model", "train"), placement.device)
        result = solver_cell(inference, params, sampler, nfe, reference, placement.share)
        run.log_metrics({"fid": result["fid"], "nfe": nfe, "sampling_seconds": result["sampling_seconds"]})
    if placement.is_main:
        write_json(paths.solver_cell(*sys.argv[1:]), result | placement.summary())
        print(f"solver_fid: {sampler} NFE={nfe}: {rounded(result)}")


if __name__ == "__main__":
    stage_main("solver_fid", main, compute=True)
    exit_now()
