"""The GPU suite (benchmarks/gpu_suite.py): its smoke sizes run on a CPU here; on a lent GPU, the stage calls must
run on CUDA."""

import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

SUITE = ROOT / "benchmarks" / "gpu_suite.py"


def run_suite(out, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(SUITE.parent)]))
    res = subprocess.run(
        [sys.executable, str(SUITE), "--out", str(out), *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


def test_the_suite_runs_at_smoke_sizes_on_a_cpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the gpu test runs the suite")
    run_suite(tmp_path, "--smoke")
    report = (tmp_path / "gpu_suite-cpu-smoke.md").read_text()
    for call in (
        "sample: sample_store.fill",
        "evaluate: likelihood.nll_bpd",
        "ddim_fid: generate",
        "figures: paper_figures",
    ):
        assert f"| {call}" in report and report.split(f"| {call}")[1].split("\n")[0].endswith("| cpu | yes |")
    assert "## Training, batch 4" in report and "| DDIM-5 | fp32 | 4 |" in report and "| DDPM-50 | fp32 | 4 |" in report
    [loop] = [line for line in report.splitlines() if line.startswith("| train() with the data loader (1 worker) |")]
    assert float(loop.split("|")[3]) > 0  # images/s of the training loop itself, its DataLoader worker included
    assert "## Full-T NLL (T = 50)" in report and "not measured: no CUDA" in report
    assert "| fp32 | 2 |" in report.split("## Full-T NLL")[1] and report.rstrip().endswith("budget.")
    assert "error:" not in report
    # memory first, then the stage calls and the checks, whatever the order of the sections asked
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings[:3] == [
        "## 256² model memory",
        "## Stage calls on the device",
        "## What the fast path changes (random weights)",
    ]
    checks = report.split("## What the fast path changes")[1]
    for sampler in ("ancestral", "ddim", "dpm_solver_pp_2m", "unipc_bh1_3", "heun"):
        for precision in ("fp32", "bf16"):
            assert f"| {sampler} | {precision}, compiled vs eager | " in checks
    rms = [line.split("|")[2:4] for line in checks.splitlines() if line.startswith("| 49 |")][0]
    assert all(0 < float(v) < 0.1 for v in rms)  # bf16 against fp32: a difference, and a small one
    assert "| channels_last | bf16 |" in checks and "host synchronisations per step: not measured: no CUDA" in checks


def test_a_spent_budget_skips_what_is_left_and_still_writes_the_file(tmp_path):
    """The file holds every finished section (rewritten after each), and a section the budget cannot hold says so."""
    run_suite(tmp_path, "--smoke", "--only", "sample", "nll", "--budget", "0")
    report = (tmp_path / "gpu_suite-cpu-smoke.md").read_text()
    assert report.count("skipped: the 0 s budget is spent") == 2 and "--budget 0 --smoke" in report


def test_a_section_whose_estimate_exceeds_what_is_left_is_skipped_not_started(tmp_path):
    run_suite(tmp_path, "--smoke", "--only", "checks", "stages", "--budget", "3")
    report = (tmp_path / "gpu_suite-cpu-smoke.md").read_text()
    assert "## stages\n\nskipped: needs ~5 s, " in report and "## checks\n\nskipped: needs ~10 s, " in report
    assert report.index("## stages") < report.index("## checks")


def test_without_cuda_the_full_suite_refuses_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(SUITE.parent)]))
    res = subprocess.run(
        [sys.executable, str(SUITE), "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 1 and res.stderr.strip().splitlines()[-1].startswith("gpu_suite: no CUDA device")


@pytest.mark.gpu
def test_on_a_gpu_every_stage_call_runs_on_cuda(tmp_path):
    run_suite(tmp_path, "--smoke", "--only", "stages")
    report = (tmp_path / "gpu_suite-cuda-smoke.md").read_text()
    assert report.count("| cuda | yes |") >= 4
