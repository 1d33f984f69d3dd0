"""The cifar10_cpu profile's whole DAG, a few steps of each stage, on a tarball laid out as the real CIFAR-10 JPEG copy
(train/<class>/*.jpg, test/<class>/*.jpg): the profile composes, validates and runs, so it cannot rot. Only counts
are reduced; the network, T, precision, samplers and schedules stay the profile's."""

import json
import math
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT
from helpers.datasets import cifar_folder_tarball
from helpers.repos import checkout_copy, pipeline_env, sh
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a paper-sized profile's DAG (T = 1000): `scripts/test.sh -m slow`

REDUCED = {  # counts only, each far below the profile's
    "train.steps": 4,
    "train.warmup": 2,
    "train.log_every": 2,
    "train.checkpoint_every": 2,
    "train.sample_every": 4,
    "sample.num_samples": 8,
    "fid.max_images": 16,
    "evaluate.nll_images": 2,
    "figures.images": 2,
    "figures.latent_fractions": "[0.05]",
    "figures.per_latent": 1,
    "figures.interpolation_points": 3,
    "figures.reconstruction_images": 2,
    "ddim_table.steps": "[10]",  # one cell of each matrix: each cell costs a stage
    "ddim_table.etas": "[0.0]",
    "ddim_table.num_samples": 8,
    "solver_table.samplers": "[dpm_solver_pp_3m]",
    "solver_table.nfe": "[10]",
    "solver_table.num_samples": 8,
}


def test_the_cifar10_cpu_profile_runs_its_dag_on_a_cifar10_jpeg_tarball(tmp_path):
    env = pipeline_env()
    repo = checkout_copy(tmp_path / "repo", env)
    tarball = cifar_folder_tarball(tmp_path / "cifar10-jpeg.tar.gz", per_class=8)  # 16 train, 16 test images
    overrides = ["profile=cifar10_cpu", f"data.source={tarball}", *(f"{k}={v}" for k, v in REDUCED.items())]
    sh(["dvc", "exp", "run", "--name", "cifar10-cpu-smoke", *(a for o in overrides for a in ("-S", o))], repo, env)

    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["profile"] == "cifar10_cpu" and params["dataset"] == "cifar10" and params["timesteps"] == 1000
    assert params["model"]["ch"] == 64 and params["train"]["mixed_precision"] == "bf16"
    assert params["sample"]["sampler"] == "ddim" and params["sample"]["precision"] == "bf16"

    def metrics(name: str) -> dict:
        return json.loads((repo / "metrics" / name).read_text())

    assert metrics("train.json")["steps"] == 4
    evaluation = metrics("evaluate.json")
    assert evaluation["num_samples"] == 8 and evaluation["nll_images"] == 2
    assert all(math.isfinite(evaluation[k]) for k in ("fid_train", "fid_test", "kid", "nll_bpd"))
    cells = [json.loads(p.read_text()) for p in sorted((repo / "metrics").glob("*_table/*.json"))]
    assert len(cells) == 2 and all(math.isfinite(c["kid"]) and c["kid_subset_size"] == 8 for c in cells)
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], repo, env))  # every cell's numbers, as DVC reads them
    files = next(iter(shown.values()))["data"]
    assert files["metrics/ddim_table/S10-eta0.0.json"]["data"]["kid"] == cells[0]["kid"]
    report = (repo / "reports" / "paper_tables.md").read_text()
    assert "profile cifar10_cpu" in report and "## DDIM Table 1: KID × 10³ ± std" in report
    with Image.open(repo / "outputs" / "samples.png") as grid:
        assert grid.mode == "RGB" and grid.width > 2 * 32  # colour 32×32 samples, several a row

    # the manual page's numbers come from such a run: scripts/results_page.py fills its blocks
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    blocks = "".join(f"<!-- run:{n} -->\nstale text\n<!-- /run:{n} -->\n" for n in ("stages", "results", "tables"))
    page.write_text("# A page\n\n" + blocks + "Text of our own.\n")
    script = [sys.executable, str(ROOT / "scripts" / "results_page.py"), str(repo), str(page)]
    subprocess.run([*script, "--experiment", "cifar10-cpu-smoke"], check=True, env=env, capture_output=True)
    text = page.read_text()
    assert "stale text" not in text and text.endswith("Text of our own.\n")
    for row in ("| train |", "| ddim_fid |", "| solver_fid |", "| report |", "| **all stages** |"):
        assert row in text, row
    assert "| FID (vs train / test)" in text and "#### DDIM Table 1: KID × 10³ ± std" in text
    assert (page.parent / "images" / "page" / "samples.png").is_file()
    wrong = subprocess.run([*script, "--experiment", "nosuch"], env=env, capture_output=True, text=True)
    assert wrong.returncode != 0 and wrong.stderr.startswith("error: --experiment: ") and "nosuch" in wrong.stderr
