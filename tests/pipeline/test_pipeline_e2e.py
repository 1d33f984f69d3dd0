"""The tiny profile end to end through DVC, in a temporary copy of this checkout: what the quickstart runs."""

import csv
import json
import math

import mlflow
import pytest
from helpers import checkout_copy, pipeline_env, sh

SOLVERS = ("dpm_solver_pp_2m", "dpm_solver_3", "unipc_3", "heun")
CELLS = {"ddim_fid@5-0.0", "ddim_fid@10-0.0"} | {f"solver_fid@{s}-{n}" for s in SOLVERS for n in (5, 10)}  # tiny tables
STAGES = {"prepare", "fid_ref", "train", "sample", "evaluate", "figures", "report"} | CELLS
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git repository holding this checkout's files (committed or not), with the tiny profile and a cosine run."""
    env = pipeline_env()
    repo = checkout_copy(tmp_path_factory.mktemp("clone"), env)
    first = sh(["dvc", "exp", "run", "-S", "profile=tiny", "--name", "tiny-linear"], repo, env)
    metrics_first = json.loads((repo / "metrics" / "evaluate.json").read_text())
    second = sh(["dvc", "exp", "run", "-S", "profile=tiny", "-S", "schedule=cosine", "--name", "tiny-cosine"],
                repo, env)
    return {"repo": repo, "env": env, "first": first, "second": second, "metrics_first": metrics_first}


def test_metrics_are_finite_and_plausible(project):
    m = project["metrics_first"]
    assert m["num_samples"] == 128 and m["nll_images"] == 32
    assert math.isfinite(m["fid_train"]) and 0 < m["fid_train"] < 400 and math.isfinite(m["fid_test"])
    assert 0 < m["nll_bpd"] < 8 and 0 <= m["prior_bpd"] < 0.01  # 8 bits/dim is a uniform model of the pixels
    assert "isc" not in m  # torch-fidelity's IS weights are not on this machine: no number is invented
    train = json.loads((project["repo"] / "metrics" / "train.json").read_text())
    assert train["steps"] == 400 and train["final_loss"] < 0.5


def test_plots_and_report(project):
    repo = project["repo"]
    with open(repo / "plots" / "rate_distortion.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 101  # T = 100 steps and the lossless end point
    rates = [float(r["rate_bpd"]) for r in rows]
    dist = [float(r["distortion_rmse"]) for r in rows]
    assert rates == sorted(rates) and dist[-1] == 0 and dist[0] > dist[len(dist) // 2] > 0
    with open(repo / "plots" / "train_loss.csv") as f:
        assert len(list(csv.DictReader(f))) == 20  # every train.log_every = 20 steps
    report = (repo / "reports" / "results.md").read_text()
    assert "| FID (vs train / test)" in report and "| NLL test (bits/dim)" in report and "| KID (vs train)" in report
    assert (repo / "outputs" / "samples.png").stat().st_size > 0


def test_kid_precision_recall_figures_and_paper_tables(project):
    repo = project["repo"]
    m = project["metrics_first"]
    assert math.isfinite(m["kid"]) and 0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1
    figures = {p.name for p in (repo / "outputs" / "figures").glob("*.png")}
    assert figures == {"progressive.png", "shared_latent.png", "ddpm_interpolation.png", "ddim_interpolation.png",
                       "ddim_reconstruction.png", "rate_distortion.png"}
    recon = json.loads((repo / "metrics" / "reconstruction.json").read_text())["table"]
    assert [r["steps"] for r in recon] == [10, 20, 50, 100]  # S > T = 100 left out
    mse = [r["mse"] for r in recon]
    # This is the cosine run: more steps give closer reconstructions, except at S = T, where ᾱ_T ≈ 0 makes the
    # inversion ill-conditioned (x̂0 divides by √ᾱ_T); DDIM Table 2 used the linear schedule.
    assert mse[0] > mse[1] > 0 and all(math.isfinite(v) for v in mse)
    cells = [json.loads(p.read_text()) for p in (repo / "metrics" / "ddim_table").glob("*.json")]
    assert len(cells) == 2 and all(math.isfinite(c["fid"]) and c["num_samples"] == 16 for c in cells)
    tables = (repo / "reports" / "paper_tables.md").read_text()
    assert "13.36" in tables and "| ‖ε̃ − εθ‖² (L_simple) | unavailable | 9.46 ± 0.11 |" in tables
    # Rows come from the runs that match them (the MLflow runs of both experiments): this cosine run fills
    # iDDPM's cosine row, DDPM's L_simple row (linear schedule) stays with the linear experiment.
    assert "| linear | L_simple |" in tables and tables.split("| linear | L_simple |")[1].split("\n")[0].endswith(
        "| tiny-linear |")
    assert tables.split("| cosine | L_simple |")[1].split("\n")[0].endswith("| this run |")
    assert next(line for line in tables.splitlines() if "(L_simple) |" in line).endswith("| tiny-linear |")
    assert "**Not comparable to the published numbers**: these runs are digits" in tables
    for name in ("ddpm_table.csv", "ddim_table1.csv", "ddim_table2.csv", "iddpm_table.csv", "fid_vs_nfe.png"):
        assert (repo / "reports" / name).stat().st_size > 0


def test_fid_against_nfe_table_and_plot(project):
    """Four ODE solvers × NFE 5 and 10 beside DDIM's η = 0 row: in the report, the CSV that dvc plots reads, and
    the plot DVC renders (one line per sampler)."""
    repo = project["repo"]
    cells = [json.loads(p.read_text()) for p in (repo / "metrics" / "solver_table").glob("*.json")]
    assert sorted((c["sampler"], c["nfe"]) for c in cells) == sorted((s, n) for s in SOLVERS for n in (5, 10))
    assert all(math.isfinite(c["fid"]) and c["num_samples"] == 16 for c in cells)
    heun = {c["nfe"]: c["network_calls"] for c in cells if c["sampler"] == "heun"}
    assert heun == {5: 4, 10: 10}  # two calls a move, ending at step 0
    with open(repo / "plots" / "fid_vs_nfe.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["sampler"] for r in rows}) == sorted(["ddim", *SOLVERS]) and len(rows) == 10
    tables = (repo / "reports" / "paper_tables.md").read_text()
    assert "## FID against network calls (NFE)" in tables and "| dpm_solver_pp_2m | " in tables
    assert "| heun | " in tables and "[4 calls]" in tables
    vega = json.loads(sh(["dvc", "plots", "show", "--json", "plots/fid_vs_nfe.csv"], repo, project["env"]))
    [plot] = vega["data"]["dvc.yaml::plots/fid_vs_nfe.csv"]  # the top-level definition, with its template
    spec = plot["content"]
    assert spec["encoding"]["color"]["field"] == "sampler" and spec["encoding"]["x"]["field"] == "nfe"
    assert {d["sampler"] for d in spec["data"]["values"]} == {"ddim", *SOLVERS}


def test_dvc_exp_show_lists_fid_and_nll_for_both_experiments(project):
    out = json.loads(sh(["dvc", "exp", "show", "--json"], project["repo"], project["env"]))
    exps = {}
    for baseline in out:
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            data = rev["data"]
            exps[exp.get("name") or rev.get("name")] = (
                data["params"]["params.yaml"]["data"], data["metrics"]["metrics/evaluate.json"]["data"])
    assert {"tiny-linear", "tiny-cosine"} <= set(exps)
    assert exps["tiny-cosine"][0]["schedule"] == "cosine" and exps["tiny-linear"][0]["schedule"] == "linear"
    for _, metrics in exps.values():
        assert math.isfinite(metrics["fid_train"]) and math.isfinite(metrics["nll_bpd"])


def test_mlflow_has_one_parent_per_execution_with_a_child_per_stage(project):
    mlflow.set_tracking_uri(f"sqlite:///{project['repo'] / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    parents = runs[runs["tags.ddpm.role"] == "pipeline"]
    assert sorted(parents["tags.dvc_experiment"]) == ["tiny-cosine", "tiny-linear"]
    for _, parent in parents.iterrows():
        children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
        expected = STAGES if parent["tags.dvc_experiment"] == "tiny-linear" else STAGES - {"prepare", "fid_ref"}
        assert set(children["tags.dvc_stage"]) == expected  # DVC skips unchanged stages; they log nothing
        experiment = parent["tags.dvc_experiment"]
        assert set(children["tags.mlflow.runName"]) == {f"{stage} · {experiment}" for stage in expected}
        assert (children["status"] == "FINISHED").all()
        assert children["tags.git_commit"].str.len().eq(40).all()
    train = runs[(runs["tags.dvc_stage"] == "train") & (runs["tags.dvc_experiment"] == "tiny-linear")]
    history = mlflow.tracking.MlflowClient().get_metric_history(train["run_id"].iloc[0], "loss")
    assert [m.step for m in history] == list(range(20, 401, 20))
    images = mlflow.tracking.MlflowClient().list_artifacts(train["run_id"].iloc[0], "images")
    assert any("ema_samples" in a.path for a in images)  # the EMA grid, logged at steps 200 and 400
    sample = runs[(runs["tags.dvc_stage"] == "sample") & (runs["tags.dvc_experiment"] == "tiny-linear")]
    artifacts = mlflow.tracking.MlflowClient().list_artifacts(sample["run_id"].iloc[0])
    assert any("samples" in a.path for a in artifacts)


def test_every_compute_stage_records_its_placement_and_cost(project):
    """Device, process count, wall time and peak memory: in each compute stage's metrics file and MLflow run."""
    repo = project["repo"]
    files = [repo / "metrics" / f"{name}.json" for name in ("fid_ref", "train", "sample", "evaluate",
                                                             "reconstruction")]
    cells = [*(repo / "metrics" / "ddim_table").glob("*.json"), *(repo / "metrics" / "solver_table").glob("*.json")]
    for path in [*files, *cells]:
        m = json.loads(path.read_text())
        assert m["device"] == "cpu" and m["num_processes"] == 1, path.name
        assert m["wall_seconds"] > 0 and m["peak_accelerator_memory_gib"] == 0 and m["peak_host_memory_gib"] > 0
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    compute = runs[runs["tags.dvc_stage"].isin(STAGES - {"prepare", "report"})]
    assert len(compute) >= len(STAGES) - 2
    assert (compute["tags.ddpm.device"] == "cpu").all() and (compute["tags.ddpm.num_processes"] == "1").all()
    assert (compute["metrics.wall_seconds"] > 0).all() and (compute["metrics.peak_accelerator_memory_gib"] == 0).all()
