"""The tiny profile end to end through DVC, in a copy of the session's quickstart run (conftest.tiny_run)."""

import csv
import json
import math
import re

import mlflow
import pytest
import yaml
from helpers.repos import DDPM, copy_of, dvc_env, sh, start_queue, wait_for_queue

from ddpm.config import compose
from ddpm.device_defaults import ELSEWHERE
from ddpm.storage.files import file_digest

SOLVERS = ("dpm_solver_pp_3m", "dpm_solver_3", "unipc_bh1_3", "heun")
CELLS = {"ddim_fid@5-0.0", "ddim_fid@10-0.0"} | {f"solver_fid@{s}-{n}" for s in SOLVERS for n in (5, 10)}  # tiny tables
STAGES = {"prepare", "fid_ref", "train", "sample", "evaluate", "figures", "report"} | CELLS

pytestmark = pytest.mark.e2e


QUEUED = {"linear", "cosine"}  # the queued grid: iDDPM's L_hybrid row for both schedules


@pytest.fixture(scope="module")
def project(tiny_run, tmp_path_factory, s3):
    """A copy of the session's quickstart run (tiny-linear in the workspace; the team's DVC remote an S3 bucket)
    pushing to a bare git remote; then a grid of two experiments queued without naming the profile (so they vary
    the workspace's tiny one) with Hydra's sweep syntax and run by two queue workers at once (`dvc queue start -j
    2`), every run logging to one SQLite store."""
    env = dvc_env(s3)
    tmp = tmp_path_factory.mktemp("e2e")
    repo = copy_of(tiny_run["repo"], tmp / "repo")
    sh(["git", "init", "-q", "--bare", str(tmp / "origin.git")], tmp, env)
    sh(["git", "remote", "add", "origin", str(tmp / "origin.git")], repo, env)
    metrics_first = json.loads((repo / "metrics" / "evaluate.json").read_text())
    queued = sh(
        [
            "dvc",
            "exp",
            "run",
            "--queue",
            "-S",
            "schedule=choice(linear,cosine)",
            "-S",
            "objective=hybrid",
            "-S",
            "variance=learned_range",
        ],
        repo,
        env,
    )
    names = re.findall(r"Queued experiment '([^']+)' for future execution", queued)
    start_queue(repo, env | {"OMP_NUM_THREADS": "1"}, jobs=2)  # a core each (README)
    status = wait_for_queue(repo, env, names, timeout=2400, poll=10)
    table = sh([DDPM, "table", "iddpm"], repo, env)
    return {
        "repo": repo,
        "env": env,
        "tmp": tmp,
        "first": tiny_run["output"],
        "names": names,
        "status": status,
        "iddpm_table": table,
        "metrics_first": metrics_first,
    }


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
    assert figures == {
        "progressive.png",
        "shared_latent.png",
        "ddpm_interpolation.png",
        "ddim_interpolation.png",
        "ddim_reconstruction.png",
        "rate_distortion.png",
    }
    recon = json.loads((repo / "metrics" / "reconstruction.json").read_text())["table"]
    assert [r["steps"] for r in recon] == [10, 20, 50, 100]  # S > T = 100 left out
    mse = [r["mse"] for r in recon]
    assert mse[0] > mse[1] > 0 and all(math.isfinite(v) for v in mse)  # more steps, closer reconstructions
    cells = [json.loads(p.read_text()) for p in (repo / "metrics" / "ddim_table").glob("*.json")]
    assert len(cells) == 2 and all(math.isfinite(c["fid"]) and c["num_samples"] == 16 for c in cells)
    tables = (repo / "reports" / "paper_tables.md").read_text()  # the workspace holds tiny-linear
    sampler = "ddim S=20 uniform η=0, x̂0 clipped"  # tiny samples with DDIM: no published IS/FID beside it
    assert f"| ‖ε̃ − εθ‖² (L_simple) | {sampler} | unavailable | not this sampler |" in tables
    assert "13.36" not in tables and "3.17" not in tables and "≤ 3.75 (3.72)" in tables  # NLL stays
    assert f"these runs sampled {sampler}; the paper's were sampled ancestral, all 1000 steps" in tables
    assert "The published DDIM FIDs are left out: these runs sampled uniform τ of T = 100" in tables
    assert tables.split("| linear | L_simple |")[1].split("\n")[0].endswith("| this run |")
    assert "also ran tiny-linear" not in tables  # its own evaluate run is "this run", not an older one
    assert next(line for line in tables.splitlines() if "(L_simple) |" in line).endswith("| this run |")
    assert "**Not comparable to the published numbers**: these runs are digits" in tables
    for name in ("ddpm_table.csv", "ddim_table1.csv", "ddim_table2.csv", "iddpm_table.csv", "fid_vs_nfe.png"):
        assert (repo / "reports" / name).stat().st_size > 0
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert summary["FID_train"] == m["fid_train"] and summary["train_steps"] == 400 and summary["samples"] == 128


def _queued(project) -> dict[str, str]:
    """schedule → name of the queued experiment that ran it."""
    out = json.loads(sh(["dvc", "exp", "show", "--json"], project["repo"], project["env"]))
    found = {}
    for baseline in out:
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            name = exp.get("name") or rev.get("name")
            if name in project["names"]:
                found[rev["data"]["params"]["params.yaml"]["data"]["schedule"]] = name
    return found


def test_two_queue_workers_complete_and_fill_the_paper_table(project):
    """`dvc exp run --queue` with a Hydra sweep queues one experiment per schedule; two workers run them at the same
    time; every row of the table built afterwards from MLflow comes from the run that matches it."""
    assert len(project["names"]) == 2 and set(project["status"].values()) == {"Success"}
    by_schedule = _queued(project)
    assert set(by_schedule) == QUEUED
    table = project["iddpm_table"]

    def run_of(row: str) -> str:
        return table.split(row)[1].split("\n")[0].rstrip(" |").rsplit("| ", 1)[-1]

    assert run_of("| linear | L_simple |") == "tiny-linear"
    assert run_of("| linear | L_hybrid |") == by_schedule["linear"]
    assert run_of("| cosine | L_hybrid |") == by_schedule["cosine"]
    assert run_of("| cosine | L_vlb |") == "not run"
    mlflow.set_tracking_uri(f"sqlite:///{project['repo'] / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    spans = [
        (
            runs.loc[runs["tags.dvc_experiment"] == name, "start_time"].min(),
            runs.loc[runs["tags.dvc_experiment"] == name, "end_time"].max(),
        )
        for name in project["names"]
    ]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the two workers ran at the same time


def test_a_schedule_only_change_reruns_only_what_depends_on_the_schedule(project):
    """With tiny-linear in the workspace and only `schedule` changed, DVC marks changed exactly the stages that read
    the schedule and the check stage (evaluate and report then follow through their inputs; check's output does not
    change, so it reruns nothing); prepare and fid_ref stay. The queued
    experiments above show the same when run: their pipelines ran every stage but those two."""
    repo, env = project["repo"], project["env"]
    params = repo / "params.yaml"
    before = params.read_text()
    try:
        params.write_text(
            yaml.safe_dump(
                compose(["profile=tiny", "schedule=cosine"], repo / "conf"), sort_keys=False, allow_unicode=True
            )
        )
        changed = json.loads(sh(["dvc", "status", "--json"], repo, env))
    finally:
        params.write_text(before)
    assert set(changed) == {"check", "train", "sample", "figures"} | CELLS  # check: whenever any param changes
    assert changed["train"] == [{"changed deps": {"params.yaml": {"schedule": "modified"}}}]
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], repo, env)


def test_fid_against_nfe_table_and_plot(project):
    """Four ODE solvers × NFE 5 and 10 beside DDIM's η = 0 row: in the report, the CSV that dvc plots reads, and
    the plot DVC renders (one line per sampler)."""
    repo = project["repo"]
    cells = [json.loads(p.read_text()) for p in (repo / "metrics" / "solver_table").glob("*.json")]
    assert sorted((c["sampler"], c["nfe"]) for c in cells) == sorted((s, n) for s in SOLVERS for n in (5, 10))
    assert all(math.isfinite(c["fid"]) and c["num_samples"] == 16 for c in cells)
    heun = {c["nfe"]: c["network_calls"] for c in cells if c["sampler"] == "heun"}
    assert heun == {5: 5, 10: 9}  # EDM's grid: two calls a move, one for the last move to σ = 0
    with open(repo / "plots" / "fid_vs_nfe.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["sampler"] for r in rows}) == sorted(["ddim", *SOLVERS]) and len(rows) == 10
    tables = (repo / "reports" / "paper_tables.md").read_text()
    assert "## FID against network calls (NFE)" in tables and "| dpm_solver_pp_3m | " in tables
    assert "| heun | " in tables and "[9 calls]" in tables
    vega = json.loads(sh(["dvc", "plots", "show", "--json"], repo, project["env"]))
    [plot] = vega["data"]["plots/fid_vs_nfe.csv"]  # the top-level definition, with its template
    spec = plot["content"]
    assert spec["encoding"]["color"]["field"] == "sampler" and spec["encoding"]["x"]["field"] == "nfe"
    assert {d["sampler"] for d in spec["data"]["values"]} == {"ddim", *SOLVERS}


def _axis_title(spec: dict, axis: str) -> str | None:
    """An axis title of a Vega-Lite spec: in its encoding, or in its first layer that encodes the axis."""
    if axis in spec.get("encoding", {}):
        return spec["encoding"][axis].get("title")
    if "spec" in spec:  # a faceted chart
        return _axis_title(spec["spec"], axis)
    return next((t for layer in spec.get("layer", []) if (t := _axis_title(layer, axis))), None)


def test_each_plot_once_with_named_axes_and_experiments_side_by_side(project):
    """`dvc plots show`: five plots, no stage-level duplicates; curves against their own x column (the training
    step, not the row index); `dvc plots diff` overlays two experiments' curves and shows both sample grids."""
    repo, env = project["repo"], project["env"]
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], repo, env))["data"]
    assert set(plots) == {
        "plots/train_loss.csv",
        "plots/rate_distortion.csv",
        "plots/fid_vs_nfe.csv",
        "outputs/samples.png",
        "outputs/figures/progressive.png",
    }
    titles = {
        name: (_axis_title(plots[name][0]["content"], "x"), _axis_title(plots[name][0]["content"], "y"))
        for name in ("plots/train_loss.csv", "plots/rate_distortion.csv", "plots/fid_vs_nfe.csv")
    }
    assert titles == {
        "plots/train_loss.csv": ("optimizer step", "training loss (the run's objective)"),
        "plots/rate_distortion.csv": ("rate (bits/dim)", "distortion (RMSE, [0, 255])"),
        "plots/fid_vs_nfe.csv": ("network function evaluations (NFE)", "FID (vs train)"),
    }
    loss = plots["plots/train_loss.csv"][0]["content"]["data"]["values"]
    assert [int(v["step"]) for v in loss] == list(range(20, 401, 20))
    cosine = _queued(project)["cosine"]
    diff = json.loads(sh(["dvc", "plots", "diff", "--json", "tiny-linear", cosine], repo, env))["data"]
    values = diff["plots/train_loss.csv"][0]["content"]["data"]["values"]
    assert {v["rev"] for v in values} == {"tiny-linear", cosine}
    # L_simple and L_hybrid losses are drawn in separate panels (facets), never on one axis
    assert {(v["rev"], v["objective"]) for v in values} == {
        ("tiny-linear", "L_simple, linear"),
        (cosine, "L_hybrid, cosine"),
    }
    assert diff["plots/train_loss.csv"][0]["content"]["facet"]["row"]["field"] == "objective"
    assert sorted(image["revisions"][0] for image in diff["outputs/samples.png"]) == sorted(["tiny-linear", cosine])
    sh(["dvc", "plots", "diff", "tiny-linear", cosine, "-o", str(repo / "plots-html")], repo, env)
    page = (repo / "plots-html" / "index.html").read_text(encoding="utf8")  # renders offline: Vega inlined
    assert "vegaEmbed" in page and not re.search(r"<script[^>]+src=", page)


def test_dvc_exp_show_headline_columns_fit_a_terminal(project):
    """summary.json carries the headline numbers of every experiment; `ddpm compare` shows them with only the
    params that differ among the experiments, within 160 columns."""
    repo, env = project["repo"], project["env"]
    out = json.loads(sh(["dvc", "exp", "show", "--json"], repo, env))
    exps = {}
    for baseline in out:
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            exps[exp.get("name") or rev.get("name")] = rev["data"]["metrics"]["metrics/summary.json"]["data"]
    assert {"tiny-linear", *project["names"]} <= set(exps)
    for summary in exps.values():
        assert math.isfinite(summary["FID_train"]) and math.isfinite(summary["NLL_bpd"])
        assert summary["samples"] == 128 and summary["train_steps"] == 400
    view = sh([DDPM, "compare"], repo, env)
    lines = view.rstrip().splitlines()
    params, metrics = lines[0].split("│")
    assert params.split() == ["Experiment", "schedule", "objective", "variance"]  # what the grid varied
    assert metrics.split() == ["FID", "train", "FID", "test", "NLL", "bpd", "KID", "Prec", "Rec", "steps", "samples"]
    assert {line.split()[0] for line in lines[2:]} == {"tiny-linear", *project["names"]}  # no baseline row
    assert max(len(line) for line in lines) <= 160, max(len(line) for line in lines)


def test_mlflow_parent_and_child_runs_as_its_users_expect(project):
    repo = project["repo"]
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    parents = runs[runs["tags.ddpm.role"] == "pipeline"]
    assert sorted(parents["tags.dvc_experiment"]) == sorted(["tiny-linear", *project["names"]])
    for _, parent in parents.iterrows():
        children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
        # the queued experiments take prepare's shards and fid_ref's statistics from DVC's run cache: they ran
        # exactly the stages that depend on the training setting
        expected = STAGES if parent["tags.dvc_experiment"] == "tiny-linear" else STAGES - {"prepare", "fid_ref"}
        assert set(children["tags.dvc_stage"]) == expected  # DVC skips unchanged stages; they log nothing
        experiment = parent["tags.dvc_experiment"]
        assert set(children["tags.mlflow.runName"]) == {f"{stage} · {experiment}" for stage in expected}
        assert (children["status"] == "FINISHED").all()
        assert children["tags.git_commit"].str.len().eq(40).all()
        assert math.isfinite(parent["metrics.FID_train"]) and math.isfinite(parent["metrics.NLL_bpd"])
        assert parent["tags.mlflow.note.content"].startswith(f"DVC experiment {experiment}: tiny profile on digits")
    assert client.get_experiment_by_name("ddpm-digits").tags["mlflow.experimentKind"] == "custom_model_development"
    linear = runs[runs["tags.dvc_experiment"] == "tiny-linear"].set_index("tags.dvc_stage")
    train_id = linear.loc["train", "run_id"]
    assert linear.loc["train", "tags.mlflow.note.content"].startswith("Stage train: fit the network")
    assert linear.loc["train", "params.train.lr"] == "0.001" and linear.loc["train", "params.schedule"] == "linear"
    assert linear.isna().loc["evaluate", "params.train.lr"] and linear.loc["evaluate", "params.evaluate.nll_images"]
    history = client.get_metric_history(train_id, "loss")
    assert [m.step for m in history] == list(range(20, 401, 20))
    assert client.get_metric_history(train_id, "system/cpu_utilization_percentage")  # system metrics
    images = [a.path for a in client.list_artifacts(train_id, "images") if a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in images if "ema_samples" in p) == [0, 200, 400]
    [dataset] = client.get_run(train_id).inputs.dataset_inputs
    assert dataset.dataset.name == "digits-8px-train" and len(dataset.dataset.digest) == 16
    artifacts = client.list_artifacts(linear.loc["sample", "run_id"])
    assert any("samples" in a.path for a in artifacts)
    # one registered version per train run; the alias on the weights with the best FID
    versions = client.search_model_versions("name = 'ddpm-digits'")
    assert len(versions) == 3
    evaluated = runs[runs["tags.dvc_stage"] == "evaluate"]
    best = evaluated.loc[evaluated["metrics.fid_train"].idxmin(), "tags.ddpm.model_sha256"]
    assert client.get_model_version_by_alias("ddpm-digits", "best_fid").tags["ddpm.model_sha256"] == best


def test_a_fresh_clone_pulls_an_experiment_from_the_s3_remote(project, s3):
    """`dvc exp push` to the team's git remote and S3 bucket; a fresh clone with `dvc exp pull`, `dvc exp apply`
    and `dvc pull` has the experiment's shards, FID references and model, nothing to recompute, and its metrics;
    the secret key is in no file of either clone."""
    repo, env, tmp = project["repo"], project["env"], project["tmp"]
    cosine = _queued(project)["cosine"]
    sh(["git", "push", "-q", "origin", "HEAD"], repo, env)
    sh(["dvc", "exp", "push", "origin", cosine], repo, env)
    fresh = tmp / "fresh"
    sh(["git", "clone", "-q", str(tmp / "origin.git"), str(fresh)], tmp, env)
    sh(["dvc", "exp", "pull", "origin", cosine], fresh, env)
    sh(["dvc", "exp", "apply", cosine], fresh, env)
    sh(["dvc", "pull"], fresh, env)
    for rel in (
        "data/shards/digits/manifest.json",
        "data/fid_ref/digits-8-inception-v3-tf-ts-train.npz",
        "data/fid_ref/digits-8-inception-v3-tf-ts-test.npz",
        "models/ema.safetensors",
        "outputs/samples.png",
    ):
        assert (fresh / rel).stat().st_size > 0, rel
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    evaluated = runs[(runs["tags.dvc_stage"] == "evaluate") & (runs["tags.dvc_experiment"] == cosine)]
    assert file_digest(fresh / "models" / "ema.safetensors") == evaluated["tags.ddpm.model_sha256"].iloc[0]
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], fresh, env)
    summary = json.loads((fresh / "metrics" / "summary.json").read_text())
    out = json.loads(sh(["dvc", "exp", "show", "--json"], fresh, env))
    shown = [
        exp["revs"][0]["data"]["metrics"]["metrics/summary.json"]["data"]
        for baseline in out
        for exp in baseline.get("experiments") or []
        if (exp.get("name") or exp["revs"][0].get("name")) == cosine
    ]
    assert shown == [summary] and math.isfinite(summary["FID_train"])
    assert "in sync" in sh(["dvc", "status", "--cloud"], fresh, env)  # everything it uses came from the bucket
    stored = s3.client().list_objects_v2(Bucket=s3.buckets["team-dvc"], Prefix="ddpm/files/md5/")
    assert stored["KeyCount"] >= 5
    for folder in (repo, fresh):
        for path in folder.rglob("*"):
            assert not (path.is_file() and s3.secret.encode() in path.read_bytes()), path


def test_every_compute_stage_records_its_placement_and_cost(project):
    """Device, process count, wall time, peak memory and what each `auto` setting became (on a CPU: IEEE float32,
    not compiled): in each compute stage's metrics file and MLflow run (whose params are the resolved ones)."""
    repo = project["repo"]
    files = [repo / "metrics" / f"{name}.json" for name in ("fid_ref", "train", "sample", "evaluate", "reconstruction")]
    cells = [*(repo / "metrics" / "ddim_table").glob("*.json"), *(repo / "metrics" / "solver_table").glob("*.json")]
    for path in [*files, *cells]:
        m = json.loads(path.read_text())
        assert m["device"] == "cpu" and m["num_processes"] == 1, path.name
        assert m["wall_seconds"] > 0 and m["peak_accelerator_memory_gib"] == 0 and m["peak_host_memory_gib"] > 0
        assert m["auto"] == {key: str(value).lower() for key, value in ELSEWHERE.items()}, path.name  # no, fp32, false
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ddpm-digits"])
    compute = runs[runs["tags.dvc_stage"].isin(STAGES - {"prepare", "report"})]
    assert len(compute) >= len(STAGES) - 2
    assert (compute["tags.ddpm.device"] == "cpu").all() and (compute["tags.ddpm.num_processes"] == "1").all()
    assert (compute["metrics.wall_seconds"] > 0).all() and (compute["metrics.peak_accelerator_memory_gib"] == 0).all()
    assert compute["tags.ddpm.auto"].str.contains("train.mixed_precision=no; train.compile=false").all()
    by_stage = compute.set_index("tags.dvc_stage")  # each stage run logs its own section's params, as run
    assert set(by_stage.loc[["train"], "params.train.mixed_precision"]) == {"no"}
    assert set(by_stage.loc[["sample"], "params.sample.precision"]) == {"fp32"}


def test_varying_the_workspace_experiment_as_users_type_it(project):
    """After the quickstart, `dvc exp run -S schedule=cosine` (no profile named) varies the workspace's tiny
    experiment, in the workspace rather than the queue; only the check stage is run here, which validates the
    composed params."""
    repo, env = project["repo"], project["env"]
    kept = {name: (repo / name).read_text() for name in ("params.yaml", "dvc.lock")}
    try:
        sh(["dvc", "exp", "run", "-S", "schedule=cosine", "--name", "workspace-cosine", "check"], repo, env)
        params = yaml.safe_load((repo / "params.yaml").read_text())
        expected = compose(["profile=tiny", "schedule=cosine"], repo / "conf")
        assert params == expected and params["dataset"] == "digits" and params["schedule"] == "cosine"
    finally:
        for name, text in kept.items():
            (repo / name).write_text(text)


def test_editing_the_mlflow_logging_reruns_only_the_report(project):
    """dvc.yaml's code deps mean "can change this stage's outputs": an edit to MLflow logging code leaves every
    stage up to date but the report, whose tables come from MLflow."""
    repo, env = project["repo"], project["env"]

    def changed() -> set[str]:
        return set(json.loads(sh(["dvc", "status", "--json"], repo, env) or "{}"))

    before = changed()
    path = repo / "src" / "ddpm" / "tracking" / "runs.py"
    text = path.read_text()
    try:
        path.write_text(text + "\n# an edit to the MLflow logging\n")
        after = changed()
    finally:
        path.write_text(text)
    assert "report" in after and after - {"report"} == before - {"report"}
