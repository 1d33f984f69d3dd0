"""Stage ddim_fid@S-η (a DVC matrix cell): FID of DDIM samples with S steps and this η (DDIM Table 1).

Usage: python pipeline/ddim_fid.py STEPS ETA   (ETA a number in [0, 1] or sigma_hat)
"""

import sys
import time

from ddpm import fid
from ddpm.build import build_diffusion, check_model_matches
from ddpm.checkpoint import load_model
from ddpm.config import Sampler
from ddpm.generate import generate
from ddpm.stage import require, stage_main, write_json


def cell_args(argv: list[str]) -> tuple[int, float | str]:
    if len(argv) != 2:
        raise ValueError("ddim_fid: usage: ddim_fid.py STEPS ETA")
    steps, eta = argv
    if not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"ddim_fid: STEPS must be a positive integer, got {steps!r}")
    try:
        return int(steps), eta if eta == "sigma_hat" else float(eta)
    except ValueError:
        raise ValueError(f"ddim_fid: ETA must be a number in [0, 1] or sigma_hat, got {eta!r}") from None


def main(params, paths, run):
    steps, eta = cell_args(sys.argv[1:])
    out = paths.ddim_cell(sys.argv[1], sys.argv[2])  # named as dvc.yaml's matrix names it
    if steps > params.timesteps:
        write_json(out, {"steps": steps, "eta": eta, "fid": None, "num_samples": 0,
                         "note": f"S > T ({params.timesteps}): not applicable"})
        print(f"ddim_fid: S={steps} exceeds T={params.timesteps}; cell marked not applicable")
        return
    require(paths.model, "model", "train")
    ref = require(paths.fid_refs["train"], "FID reference statistics", "fid_ref")
    fid.verified_weights_path()
    model = load_model(paths.model)
    check_model_matches(params, model, paths.model)
    cfg = params.sample.model_copy(update={"sampler": Sampler.DDIM, "steps": steps, "eta": eta})
    shape = (model.config.in_channels, params.data.resolution, params.data.resolution)
    start = time.perf_counter()
    images = generate(build_diffusion(params), model, cfg, shape, params.seed, 0, params.ddim_table.num_samples)
    sampling = time.perf_counter() - start
    features = fid.inception_features(fid.to_uint8_rgb_batches(images, params.fid.batch_size))
    score = fid.frechet_distance(fid.statistics(features), fid.load_statistics(ref))
    result = {"steps": steps, "eta": eta, "fid": score, "num_samples": int(len(images)),
              "sampling_seconds": sampling}
    write_json(out, result)
    run.log_metrics({"fid": score, "steps": steps, "sampling_seconds": sampling})
    print(f"ddim_fid: S={steps} η={eta}: FID {score:.2f} on {len(images)} samples")


if __name__ == "__main__":
    stage_main("ddim_fid", main)
