"""The figure artefacts (shapes, content) and the paper tables (cells filled, published numbers beside ours)."""

import numpy as np
import pytest
import torch

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.gaussian import gaussian_eps_model
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.unet import UNet, UNetConfig
from ddpm.evaluation import paper_figures as figures
from ddpm.evaluation import paper_tables

SHAPE = (1, 8, 8)


def small():
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1, 2), attn_resolutions=(), resolution=8)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return GaussianDiffusion(get_beta_schedule("linear", 25)), model


def test_progressive_shared_latent_and_interpolation_figures_have_the_papers_layout():
    diffusion, model = small()
    gen = torch.Generator().manual_seed(0)
    cell = 8 * 6 + 2  # an 8×8 image shown ×6, plus the border
    prog = figures.progressive_generation(diffusion, model, SHAPE, count=3, frames=5, generator=gen, device="cpu")
    assert prog.shape == (3 * cell + 2, 5 * cell + 2, 1) and prog.dtype == np.uint8
    x0 = torch.rand(2, *SHAPE) * 2 - 1
    shared = figures.shared_latent_samples(diffusion, model, x0, [4, 9, 24], per_latent=2, generator=gen)
    assert shared.shape == (3 * cell + 2, 3 * cell + 2, 1)  # a row per t: x_t then 2 samples
    interp = figures.ddpm_interpolations(diffusion, model, x0[:1], x0[1:], [9, 24], count=4, generator=gen)
    assert interp.shape == (2 * cell + 2, 6 * cell + 2, 1)  # source, 4 mixtures, source
    slerp = figures.ddim_interpolations(diffusion, model, SHAPE, pairs=2, count=5, steps=5, generator=gen, device="cpu")
    assert slerp.shape == (2 * cell + 2, 5 * cell + 2, 1)
    assert len(np.unique(prog)) > 10  # not blank


def test_ddim_reconstruction_error_falls_with_steps_for_the_exact_model():
    """With the exact ε of Gaussian data, DDIM's encode → decode ODE discretisation error shrinks as S grows."""
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 1000))
    x0 = 0.1 + 0.2 * torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    table, image = figures.ddim_reconstructions(diffusion, gaussian_eps_model(diffusion), x0, [10, 50, 200], "euler")
    mse = [row["mse"] for row in table]
    assert [row["steps"] for row in table] == [10, 50, 200]
    assert mse[0] > mse[1] > mse[2] and mse[2] < 1e-4
    assert image.shape[0] == 4 * (4 * 12 + 2) + 2  # originals + one row per S, 4×4 images shown ×12


SCALE = {
    "dataset": "cifar10",
    "data.resolution": 32,
    "timesteps": 1000,
    "train.steps": 800000,
    "sample.num_samples": 50000,
    "fid_reference": "3fa2c0d1e4b5a697",
    "sample.sampler": "ancestral",  # DDPM's sampler: all T steps, x̂0 clipped (sample.clip_denoised null)
    "sample.steps": None,
    "sample.clip_denoised": None,
}
ANCESTRAL = "ancestral, all 1000 steps, x̂0 clipped"


def test_paper_tables_put_ours_beside_the_published_numbers():
    cells = [
        {"steps": 10, "eta": 0.0, "fid": 50.5, "num_samples": 64},
        {"steps": 10, "eta": "sigma_hat", "fid": 300.0, "num_samples": 64},
        {"steps": 200, "eta": 0.0, "fid": None, "num_samples": 0},
    ]
    md, rows = paper_tables.ddim_table(cells)
    assert "| 0 | 50.50 (13.36) |" in md and "| σ̂ | 300.00 (367.43) |" in md
    assert {r["steps"] for r in rows} == {10, 20, 50, 100, 1000}  # an S > T cell has no row of its own
    run = paper_tables.Record(
        params={"mean_type": "eps", "objective": "simple", "variance": "fixed_large", "schedule": "linear", **SCALE},
        metrics={"fid_train": 40.0, "nll_bpd": 4.9, "num_samples": 50000},
        label="this run",
    )
    key = paper_tables.comparison_key(run.params)
    ddpm_md, _ = paper_tables.ddpm_table([run], key)
    assert (
        f"| ‖ε̃ − εθ‖² (L_simple) | {ANCESTRAL} | unavailable | 9.46 ± 0.11 | 40.00 | 3.17 | 4.900 | ≤ 3.75 (3.72) "
        "| 800000 | 50000 | this run |"
    ) in ddpm_md
    assert ddpm_md.count("not run") == 5 and "left out" not in ddpm_md
    iddpm_md, iddpm_rows = paper_tables.iddpm_table([run], key)
    assert f"| linear | L_simple | {ANCESTRAL} | 4.900 | 40.00 | 800000 | 50000 | this run |" in iddpm_md
    assert len(iddpm_rows) == 6 and iddpm_rows[0]["sampler"] == ANCESTRAL
    recon = paper_tables.reconstruction_table([{"steps": 10, "mse": 0.0123}, {"steps": 20, "mse": 0.0045}])
    assert "| MSE | 0.0123 | 0.0045 |" in recon


def test_tables_and_the_best_fid_alias_take_only_comparable_runs():
    """Runs of other lengths, sample counts or FID references never fill a row; the newest comparable run does,
    and older comparable ones are listed."""

    def run(label, fid, **scale):
        params = {"mean_type": "eps", "objective": "simple", "variance": "fixed_large", "schedule": "linear"}
        return paper_tables.Record(
            params=params | SCALE | scale, metrics={"fid_train": fid, "num_samples": 50000}, label=label
        )

    records = [
        run("old-400", 30.0, **{"train.steps": 400}),
        run("first-480", 25.0, **{"train.steps": 480}),
        run("fewer-samples", 5.0, **{"train.steps": 480, "sample.num_samples": 128}),
        run("other-reference", 4.0, **{"train.steps": 480, "fid_reference": "ffff0000ffff0000"}),
        run("second-480", 27.0, **{"train.steps": 480}),
    ]
    key = paper_tables.comparison_key(records[-1].params)
    assert [r.label for r in paper_tables.comparable(records, key)] == ["first-480", "second-480"]
    md, rows = paper_tables.iddpm_table(records, key)
    assert f"| linear | L_simple | {ANCESTRAL} | — | 27.00 | 480 | 50000 | second-480 |" in md  # the newest
    assert "- linear, L_simple: also ran first-480 (FID 25.00)" in md and "old-400" not in md
    assert rows[0]["run"] == "second-480" and rows[0]["train_steps"] == 480
    assert "training steps 480" in paper_tables.comparison_sentence(key)


def test_rate_distortion_figure_renders():
    from ddpm.evaluation.plots import rate_distortion_figure

    rows = [{"t": t, "rate_bpd": 5.0 - t / 10, "distortion_rmse": float(t)} for t in range(10, -1, -1)]
    img = rate_distortion_figure(rows)
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[1] > img.shape[0]


def test_fid_vs_nfe_puts_ddims_eta_0_row_beside_the_paper_and_the_solvers_below():
    from ddpm.evaluation.plots import fid_vs_nfe_figure

    ddim = [
        {"steps": 10, "eta": 0.0, "fid": 20.0},
        {"steps": 20, "eta": 0.0, "fid": 10.0},
        {"steps": 10, "eta": 1.0, "fid": 50.0},
    ]
    solvers = [
        {"sampler": "dpm_solver_pp_2m", "nfe": 10, "network_calls": 10, "fid": 8.0},
        {"sampler": "heun", "nfe": 5, "network_calls": 4, "fid": 30.0},
        {"sampler": "ancestral", "nfe": 2000, "fid": None, "num_samples": 0},
    ]
    md, rows = paper_tables.fid_vs_nfe_table(solvers, ddim)
    assert md.splitlines()[0] == "| sampler \\ NFE | 5 | 10 | 20 |"
    assert "| ddim |  | 20.00 (13.36) | 10.00 (6.84) |" in md  # η = 1 is not DDIM's ODE row
    assert "| dpm_solver_pp_2m |  | 8.00 |  |" in md and "| heun | 30.00 [4 calls] |  |  |" in md
    assert "ancestral" not in md and len(rows) == 4
    image = fid_vs_nfe_figure(rows)
    assert image.ndim == 3 and image.shape[2] == 3


def test_kid_tables_put_each_cell_with_its_std_in_the_grid_of_its_fid_table():
    ddim = [
        {"steps": 10, "eta": 0.0, "fid": 20.0, "kid": 0.0125, "kid_std": 0.001},
        {"steps": 20, "eta": "sigma_hat", "fid": 10.0, "kid": 0.25, "kid_std": 0.0204},
        {"steps": 10, "eta": 1.0, "fid": 50.0, "kid": -0.0004, "kid_std": 0.0003},
        {"steps": 20, "eta": 1.0, "fid": 40.0},  # a cell scored before KID was: left blank
    ]
    solvers = [{"sampler": "heun", "nfe": 20, "network_calls": 19, "fid": 8.0, "kid": 0.003, "kid_std": 0.0005}]
    assert paper_tables.kid_table(None, ddim).splitlines() == [
        "| η \\ S | 10 | 20 |",
        "|---|---|---|",
        "| 0 | 12.50 ± 1.00 |  |",
        "| 1 | -0.40 ± 0.30 |  |",
        "| σ̂ |  | 250.00 ± 20.40 |",
    ]
    assert paper_tables.kid_table(solvers, ddim).splitlines()[2:] == [
        "| ddim | 12.50 ± 1.00 |  |",
        "| heun |  | 3.00 ± 0.50 |",
    ]
    _, rows = paper_tables.fid_vs_nfe_table(solvers, ddim)
    assert {(r["sampler"], r["kid"]) for r in rows} == {("ddim", 0.0125), ("heun", 0.003)}
    assert paper_tables.kid_table(None, [{"steps": 10, "eta": 0.0, "fid": 1.0}]) == ""


def test_solver_cells_parse_their_matrix_arguments():
    from ddpm.core.options import Sampler
    from ddpm.core.solvers import calls_spent as network_calls
    from ddpm.evaluation.fid_cells import not_applicable, parse_solver_cell

    assert parse_solver_cell(["unipc_3", "20"]) == (Sampler.UNIPC_3, 20)
    for argv, message in (
        (["euler", "10"], "solver_fid: SAMPLER must be one of ancestral, ddim"),
        (["heun", "0"], "solver_fid: NFE must be a positive integer, got '0'"),
        (["heun"], "solver_fid: usage"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_solver_cell(argv)
    assert not_applicable(2000, 1000, sampler="ddim", nfe=2000)["note"] == "2000 > T (1000): not applicable"
    assert not_applicable(10, 1000, sampler="ddim", nfe=10) is None
    assert not_applicable(1000, 100, steps=1000, eta=0.0) == {
        "steps": 1000,
        "eta": 0.0,
        "fid": None,
        "num_samples": 0,
        "note": "1000 > T (100): not applicable",
    }
    assert [network_calls(Sampler.HEUN, n, "step0") for n in (4, 5)] == [4, 4]
    assert [network_calls(Sampler.HEUN, n, "clean") for n in (4, 5)] == [3, 5]
    assert network_calls(Sampler.UNIPC_3, 5, "step0") == 5
    assert network_calls("heun", 4, "clean") == 3  # the sampler as params hold it, a string


def test_latent_timesteps_are_fractions_of_T():
    assert figures.latent_timesteps(1000, [0.25, 0.5, 0.75, 1.0]) == [249, 499, 749, 999]
    assert figures.latent_timesteps(4, [0.1, 0.2]) == [0]  # distinct, clamped to the chain


def test_each_table_row_comes_from_a_run_whose_setting_matches_it():
    """A later cosine run must not fill DDPM's rows (linear schedule), nor a run of another dataset or length."""
    scale = {
        "dataset": "digits",
        "data.resolution": 8,
        "timesteps": 100,
        "train.steps": 400,
        "sample.num_samples": 128,
        "fid_reference": "0123456789abcdef",
    }
    eps_simple = {"mean_type": "eps", "objective": "simple", "variance": "fixed_large", "profile": "tiny"}

    def run(label, fid, **params):
        return paper_tables.Record(params=eps_simple | scale | params, metrics={"fid_train": fid}, label=label)

    records = [
        run("tiny-linear", 40.0, schedule="linear"),
        run("cifar-linear", 3.2, schedule="linear", dataset="cifar10", profile="cifar10_ddpm"),
        run("longer", 9.0, schedule="linear", **{"train.steps": 800}),
        run("tiny-cosine", 30.0, schedule="cosine"),
    ]
    key = paper_tables.comparison_key(scale)
    ddpm_md, rows = paper_tables.ddpm_table(records, key)
    simple_row = next(line for line in ddpm_md.splitlines() if "L_simple" in line)
    assert simple_row.endswith("| 40.00 | not this sampler | — | ≤ 3.75 (3.72) | 400 | 128 | tiny-linear |")
    assert rows[-1]["fid"] == 40.0
    iddpm_md, _ = paper_tables.iddpm_table(records, key)
    assert "| linear | L_simple | — | — | 40.00 | 400 | 128 | tiny-linear |" in iddpm_md  # sampler not recorded
    assert "| cosine | L_simple | — | — | 30.00 | 400 | 128 | tiny-cosine |" in iddpm_md
    setting = {"dataset": "digits", "profile": "tiny", "timesteps": 100}
    assert "Not comparable" in paper_tables.comparability(setting)
    assert "profile tiny is reduced" in paper_tables.comparability(setting)
    assert "Not comparable" not in paper_tables.comparability({"dataset": "cifar10", "profile": "cifar10_ddpm"})


def test_figures_progress_counts_every_network_call_it_announces(capsys):
    """The figures' progress total (network calls) is exact: the bar ends at total/total."""
    from helpers.params import make_params

    from ddpm.factory import Inference

    diffusion, model = small()
    cfg = make_params(
        {
            "figures": {
                "images": 2,
                "frames": 3,
                "latent_fractions": [0.2, 1.0],
                "per_latent": 2,
                "interpolation_points": 3,
                "ddim_steps": 4,
                "reconstruction_steps": [3, 5, 100],
            }
        }
    ).figures
    rd_rows = [{"t": t, "rate_bpd": 5.0 - t / 10, "distortion_rmse": float(t)} for t in range(25, -1, -1)]
    inference = Inference(model, diffusion, SHAPE, torch.device("cpu"))
    images, _ = figures.paper_figures(inference, torch.rand(3, *SHAPE) * 2 - 1, cfg, rd_rows, seed=0)
    total = figures.network_calls(25, cfg, figures.latent_timesteps(25, [0.2, 1.0]), [3, 5])
    assert total == 25 + 2 * 25 + 4 + 2 * (3 + 5)  # Figs. 7 and 8: one chain each from the largest t (24)
    assert f"figures: done ({total}/{total} calls)" in capsys.readouterr().err
    grid = 2 * (8 * 6 + 2) + 2  # two chains of 8×8 images shown ×6
    assert images["progressive"].shape[0] > grid and images["progressive"].shape[2] == 3  # with its title above
    for name in ("progressive", "shared_latent", "ddpm_interpolation", "ddim_interpolation", "ddim_reconstruction"):
        assert (images[name][:24] < 128).any(), name  # dark text in the title band


def test_a_captioned_grid_keeps_its_pixels_and_labels_each_row():
    from ddpm.evaluation.plots import captioned

    grid = np.zeros((40, 50, 3), np.uint8)
    grid[:20, :, 1] = 255  # two rows: green, red (captions are drawn in grey levels only)
    grid[20:, :, 0] = 255
    out = captioned(
        grid, "A title long enough to wrap onto a second line of the caption", ["first", "second"], "a note"
    )
    red = np.argwhere((out == (255, 0, 0)).all(axis=2))
    (y0, x0), (y1, x1) = red.min(0), red.max(0)
    assert (y1 - y0 + 1, x1 - x0 + 1) == (20, 50) and len(red) == 20 * 50  # the grid's pixels, intact
    assert (out[y0 - 20 : y0, x0 : x1 + 1] == (0, 255, 0)).all()
    assert (out[y0 : y1 + 1, :x0] < 100).any() and (out[: y0 - 20] < 100).any()  # a row label, the title
    assert (out[y1 + 1 :] < 100).any()  # the footer


def test_a_diverged_reconstruction_and_small_sample_fids_are_said_in_words():
    rows = [{"steps": 10, "mse": 0.0082}, {"steps": 100, "mse": 906.7}]
    table = paper_tables.reconstruction_table(rows)
    assert "| MSE | 0.0082 | 906.7 (diverged) |" in table and "S = 100 diverged" in table
    assert "diverged" not in paper_tables.reconstruction_table(rows[:1])
    assert "cannot rank samplers" in paper_tables.sample_count_caveat(16)
    assert "biased upward" in paper_tables.sample_count_caveat(10_000)
    assert paper_tables.sample_count_caveat(50_000) == ""


def test_a_report_without_fid_vs_nfe_cells_says_so_instead_of_linking_a_missing_figure():
    from helpers.params import make_params

    from ddpm.evaluation.results import build_report

    evaluation = {
        "num_samples": 4,
        "fid_train": 1.0,
        "fid_test": 1.0,
        "nll_bpd": 1.0,
        "prior_bpd": 0.0,
        "nll_images": 1,
    }
    report = build_report(
        make_params(),
        {"steps": 1, "loss": 0.1},
        evaluation,
        [{"steps": 10, "mse": 0.1}],
        [{"steps": 10, "eta": 1.0, "fid": 3.0, "num_samples": 4}],
        [],
    )
    assert report.fid_vs_nfe == [] and "fid_vs_nfe.png" not in report.tables_md
    assert "No cells: list samplers in solver_table.samplers" in report.tables_md


def test_a_run_sampled_otherwise_than_the_paper_never_sits_beside_its_numbers():
    """DDPM's 3.17 was sampled with all 1000 ancestral steps: a DDIM S=10 run fills the row with its sampler
    named and the published IS and FID left out (the bound, NLL, does not depend on the sampler); an ancestral
    run of the same setting is not comparable with it."""
    ddim10 = SCALE | {"sample.sampler": "ddim", "sample.steps": 10, "sample.skip": "quad", "sample.eta": 0.0}
    params = {"mean_type": "eps", "objective": "simple", "variance": "fixed_large", "schedule": "linear"}
    runs = [
        paper_tables.Record(params=params | SCALE, metrics={"fid_train": 3.3}, label="ancestral-1000"),
        paper_tables.Record(params=params | ddim10, metrics={"fid_train": 13.4, "nll_bpd": 3.7}, label="ddim-10"),
    ]
    key = paper_tables.comparison_key(runs[-1].params)
    assert key["sampler"] == "ddim S=10 quad η=0, x̂0 unclipped"
    assert [r.label for r in paper_tables.comparable(runs, key)] == ["ddim-10"]
    md, rows = paper_tables.ddpm_table(runs, key)
    row = next(line for line in md.splitlines() if "L_simple" in line)
    assert row.startswith("| ε prediction (ours) | ‖ε̃ − εθ‖² (L_simple) | ddim S=10 quad η=0, x̂0 unclipped |")
    assert "3.17" not in md and "9.46" not in md and "| 13.40 | not this sampler | 3.700 | ≤ 3.75 (3.72) |" in row
    assert "sampled ddim S=10 quad η=0, x̂0 unclipped; the paper's were sampled " + ANCESTRAL in md
    assert rows[-1]["fid_paper"] is None and rows[-1]["sampler"] == key["sampler"]
    # the same params as MLflow logs them (text) name the same sampler
    logged = {k: str(v) for k, v in (params | ddim10).items()}
    assert paper_tables.sampler_setting(logged) == key["sampler"]
    assert paper_tables.sampler_setting(SCALE | {"sample.clip_denoised": False}) == (
        "ancestral, all 1000 steps, x̂0 unclipped"
    )
    assert paper_tables.sampler_setting(SCALE | {"sample.steps": 1000}) == ANCESTRAL  # all T steps, asked for
    assert paper_tables.sampler_setting(SCALE | {"sample.steps": 250}) == "ancestral respaced 250, x̂0 clipped"


def test_ddims_table_shows_the_paper_only_for_ddims_own_setting():
    cells = [{"steps": 10, "eta": 0.0, "fid": 50.5, "num_samples": 64}]
    md, rows = paper_tables.ddim_table(cells, published=False)
    assert "| 0 | 50.50 |" in md and "13.36" not in md and rows[0]["fid_paper"] is None
    nfe_md, _ = paper_tables.fid_vs_nfe_table([], cells, published=False)
    assert "13.36" not in nfe_md and "| ddim | 50.50 |" in nfe_md
    cifar = {"timesteps": 1000, "ddim_table.skip": "quad", "ddim_table.clip_denoised": None}
    assert paper_tables.ddim_table_setting(cifar) == paper_tables.DDIM_TABLE_SETTING
    for change in ({"ddim_table.skip": "uniform"}, {"ddim_table.clip_denoised": "True"}, {"timesteps": 100}):
        assert paper_tables.ddim_table_setting(cifar | change) != paper_tables.DDIM_TABLE_SETTING


def test_a_report_rerun_in_another_execution_does_not_list_its_own_evaluation_as_an_older_run():
    """The evaluate run of the same weights, sampled the same way, logged by an earlier execution (only the report
    reran) is this run; another run of the same setting is an older one."""
    from helpers.params import make_params

    from ddpm.config import flatten
    from ddpm.evaluation.results import build_report

    params = make_params()
    evaluation = {"num_samples": 4, "fid_train": 5.0, "fid_test": 5.0, "nll_bpd": 1.0, "prior_bpd": 0.0}
    evaluation["nll_images"] = 1
    logged = flatten(params.model_dump(mode="json")) | {"fid_reference": None}
    own = paper_tables.Record(params=logged, metrics=evaluation, label="boric-leaf", model_sha256="aa")
    worse = evaluation | {"fid_train": 9.0}
    other = paper_tables.Record(params=logged, metrics=worse, label="older", model_sha256="bb")
    args = ({"steps": 1, "loss": 0.1}, evaluation, [{"steps": 10, "mse": 0.1}])
    cells = [{"steps": 10, "eta": 1.0, "fid": 3.0, "num_samples": 4}]
    tables = build_report(params, *args, cells, [other, own], model_sha256="aa").tables_md
    assert "also ran older (FID 9.00)" in tables and "boric-leaf" not in tables
