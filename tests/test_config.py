import pytest
import yaml
from helpers import ROOT
from helpers.params import compose_raw, make_params
from helpers.repos import committed

from ddpm.config import ParamsError, load_params, validate_params
from ddpm.evaluation.fid_reference import EXTRACTOR_NAME
from ddpm.stage.paths import Paths

_compose = compose_raw


def test_committed_params_yaml_is_the_default_composition():
    """Checked against what is committed: an experiment (the quickstart's) leaves its params in the workspace."""
    assert yaml.safe_load(committed("params.yaml")) == _compose([])


def test_every_key_is_required_so_defaults_live_in_conf_alone():
    raw = _compose([])
    del raw["train"]["channels_last"]
    with pytest.raises(ParamsError, match=r"^params.yaml: train.channels_last: required key is missing$"):
        validate_params(raw)


def test_default_params_are_ddpm_cifar10():
    p = validate_params(yaml.safe_load(committed("params.yaml")))
    assert (p.dataset.value, p.schedule.value, p.timesteps, p.objective.value, p.mean_type.value) == (
        "cifar10",
        "linear",
        1000,
        "simple",
        "eps",
    )
    assert (p.model.ch, p.model.ch_mult, p.model.attn_resolutions, p.model.dropout) == (128, [1, 2, 2, 2], [16], 0.1)
    assert (p.train.lr, p.train.batch_size, p.train.steps, p.train.warmup, p.train.ema_decay) == (
        2e-4,
        128,
        800_000,
        5000,
        0.9999,
    )
    assert p.sample.num_samples == 50_000


def test_tiny_profile_validates_and_overrides_compose():
    p = validate_params(_compose(["profile=tiny", "schedule=cosine"]))
    assert (p.profile, p.dataset.value, p.schedule.value) == ("tiny", "digits", "cosine")


BAD = [
    ({"schedule": "quadratic"}, "params.yaml: schedule: Input should be 'linear' or 'cosine' (got 'quadratic')"),
    (
        {"dataset": "mnist"},
        "params.yaml: dataset: Input should be 'digits', 'cifar10', 'lsun_church', 'lsun_bedroom', "
        "'lsun_cat', 'celebahq' or 'folder' (got 'mnist')",
    ),
    ({"objective": "l1"}, "params.yaml: objective: Input should be 'simple', 'kl', 'vlb' or 'hybrid' (got 'l1')"),
    ({"variance": "huge"}, "params.yaml: variance: Input should be"),
    ({"mean_type": "score"}, "params.yaml: mean_type: Input should be"),
    ({"timesteps": 0}, "params.yaml: timesteps: Input should be greater than 0 (got 0)"),
    ({"timesteps": 10, "sample": {"steps": 5}}, "params.yaml: timesteps: the linear schedule scaled to T=10 reaches"),
    ({"seed": -1}, "params.yaml: seed: Input should be greater than or equal to 0"),
    (
        {"train": {"loader_workers": -1}},
        "params.yaml: train.loader_workers: Input should be greater than or equal to 0",
    ),
    ({"colour": "red"}, "params.yaml: colour: unknown key"),
    ({"train": {"lr": -1.0}}, "params.yaml: train.lr: Input should be greater than 0 (got -1.0)"),
    ({"train": {"batch_size": "many"}}, "params.yaml: train.batch_size: Input should be a valid integer"),
    ({"train": {"ema_decay": 1.0}}, "params.yaml: train.ema_decay: Input should be less than 1"),
    ({"train": {"bacth_size": 4}}, "params.yaml: train.bacth_size: unknown key"),
    ({"sample": {"eta": 1.5}}, "params.yaml: sample.eta: must be a number in [0, 1] or 'sigma_hat' (got 1.5)"),
    (
        {"model": {"downsample_padding": "valid"}},
        "params.yaml: model.downsample_padding: Input should be 'same' or 'symmetric' (got 'valid')",
    ),
    (
        {"model": {"import_from": {"path": None, "format": "tf"}}},
        "params.yaml: model.import_from.format: Input should be 'auto', 'ddpm', 'iddpm' or 'diffusers' (got 'tf')",
    ),
    ({"sample": {"steps": 2000}}, "params.yaml: sample.steps: 2000 exceeds timesteps (1000)"),
    (
        {"sample": {"sampler": "euler"}},
        "params.yaml: sample.sampler: Input should be 'ancestral', 'ddim', "
        "'dpm_solver_pp_2m', 'dpm_solver_pp_3m', 'dpm_solver_2', 'dpm_solver_3', 'unipc_2', 'unipc_3', "
        "'unipc_bh1_2', 'unipc_bh1_3' or 'heun' (got 'euler')",
    ),
    ({"sample": {"sampler": "heun"}}, "params.yaml: sample.steps: heun needs its budget of network calls"),
    (
        {"sample": {"solver_spacing": "cubic"}},
        "params.yaml: sample.solver_spacing: Input should be 'auto', "
        "'time_uniform', 'logsnr', 'time_quadratic', 'karras' or 'edm' (got "
        "'cubic')",
    ),
    (
        {"solver_table": {"spacing": "edm"}},
        "params.yaml: solver_table.spacing: edm is EDM's grid for its Heun sampler, not for dpm_solver_pp_3m",
    ),
    (
        {"sample": {"sampler": "heun", "steps": 9, "solver_spacing": "edm", "solver_end": "step0"}},
        "params.yaml: sample.solver_end: EDM's grid ends at σ = 0 (clean)",
    ),
    ({"mean_type": "mu"}, "params.yaml: solver_table.samplers: dpm_solver_pp_3m integrates the probability-flow ODE"),
    ({"solver_table": {"samplers": ["heun", "ddim", "heun"]}}, "params.yaml: solver_table.samplers: listed twice"),
    ({"solver_table": {"nfe": [10, 0]}}, "params.yaml: solver_table.nfe.1: Input should be greater than 0"),
    ({"solver_table": {"end": "zero"}}, "params.yaml: solver_table.end: Input should be 'auto', 'step0' or 'clean'"),
    ({"sample": {"num_samples": 0}}, "params.yaml: sample.num_samples: Input should be greater than 0"),
    ({"variance": "learned_range"}, "params.yaml: variance: 'learned_range' gets no gradient from objective 'simple'"),
    (
        {"data": {"resolution": 30}},
        "params.yaml: model.ch_mult: 4 levels halve the resolution 3 times; resolution 30 is not divisible by 8",
    ),
    (
        {"model": {"attn_resolutions": [5]}},
        "params.yaml: model.attn_resolutions: 5 is not a resolution the U-Net "
        "reaches (it runs at [32, 16, 8, 4]); attention there would silently not",
    ),
    ({"model": {"ch": 48}}, "params.yaml: model.ch: every level width [48, 96] must be divisible by 32 groups"),
    ({"model": {"num_heads": 3}}, "params.yaml: model.num_heads: 3 does not divide the attention width 256"),
    ({"model": {"ch_mult": []}}, "params.yaml: model.ch_mult: List should have at least 1 item"),
    ({"model": {"dropout": 2}}, "params.yaml: model.dropout: Input should be less than 1"),
    ({"evaluate": {"nll_images": -5}}, "params.yaml: evaluate.nll_images: Input should be greater than 0"),
    (
        {"sample": {"precision": "fp16"}},
        "params.yaml: sample.precision: Input should be 'auto', 'fp32', 'tf32' or 'bf16' (got 'fp16')",
    ),
    (
        {"sample": {"compile": "sometimes"}},
        "params.yaml: sample.compile: Input should be true, false or auto (got 'sometimes')",
    ),
    (
        {"evaluate": {"nll_precision": "fp64"}},
        "params.yaml: evaluate.nll_precision: Input should be 'auto', 'fp32', 'tf32'",
    ),
    ({"data": {"verify": "never"}}, "params.yaml: data.verify: Input should be 'before' or 'streaming' (got 'never')"),
    ({"timestep_sampler": "greedy"}, "params.yaml: timestep_sampler: Input should be 'uniform' or 'loss_aware'"),
    ({"sample": {"eta": "big"}}, "params.yaml: sample.eta: must be a number in [0, 1] or 'sigma_hat' (got 'big')"),
    ({"sample": {"respacing": "10,x"}}, "params.yaml: sample.respacing: cannot parse '10,x'"),
    ({"sample": {"respacing": "ddim999"}}, "params.yaml: sample.respacing: no integer stride gives exactly 999"),
    ({"sample": {"respacing": "50", "sampler": "ddim"}}, "params.yaml: sample.respacing: applies to sampler"),
    (
        {"train": {"mixed_precision": "fp8"}},
        "params.yaml: train.mixed_precision: Input should be 'auto', 'no', 'tf32', 'bf16'",
    ),
    (
        {"train": {"grad_accumulation": 3}},
        "params.yaml: train.batch_size: 128 does not split over 1 process(es) × "
        "3 accumulation step(s); use a multiple of 3",
    ),
    ({"train": {"grad_accumulation": 0}}, "params.yaml: train.grad_accumulation: Input should be greater than 0"),
    ({"train": {"sample_steps": 5000}}, "params.yaml: train.sample_steps: 5000 exceeds timesteps (1000)"),
]


@pytest.mark.parametrize("patch,message", BAD, ids=[m.split(": ")[1] for _, m in BAD])
def test_bad_params_give_one_line_error_naming_the_key(patch, message):
    raw = _compose([])
    for key, value in patch.items():
        if isinstance(value, dict):
            raw[key] = raw[key] | value
        else:
            raw[key] = value
    with pytest.raises(ParamsError) as err:
        validate_params(raw)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_paper_options_validate():
    p = make_params(
        {
            "objective": "hybrid",
            "variance": "learned_range",
            "schedule": "cosine",
            "timestep_sampler": "loss_aware",
            "sample": {"sampler": "ddim", "eta": "sigma_hat", "steps": 20, "skip": "quad"},
        }
    )
    assert p.sample.eta == "sigma_hat" and p.timestep_sampler.value == "loss_aware"
    assert make_params({"sample": {"respacing": "10,10,10"}}).sample.respacing == "10,10,10"


def test_unreadable_params_files(tmp_path):
    with pytest.raises(ParamsError, match="params: file .*nope.yaml not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule: [linear\n")
    with pytest.raises(ParamsError, match="is not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="must hold a mapping"):
        load_params(bad)


def _declared(entries: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def test_dvc_yaml_outs_are_the_stage_paths():
    """dvc.yaml declares exactly the outs, metrics and plots that the stage scripts write, as ``Paths`` names them
    (for the default and the tiny profile)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for raw in (_compose([]), _compose(["profile=tiny"])):
        p = validate_params(raw)
        declared = set()
        for stage in stages.values():
            for kind in ("outs", "metrics", "plots"):
                for path in _declared(stage.get(kind, [])):
                    declared.add(
                        path.replace("${dataset}", p.dataset.value).replace(
                            "${data.resolution}", str(p.data.resolution)
                        )
                    )
        paths = Paths(p)
        written = {
            paths.checked,
            paths.shards,
            *paths.fid_refs.values(),
            paths.fid_ref_metrics,
            paths.model,
            paths.train_metrics,
            paths.train_plot,
            paths.samples,
            paths.sample_grid,
            paths.sample_metrics,
            paths.eval_metrics,
            paths.rd_plot,
            paths.figures,
            paths.reconstruction_metrics,
            paths.reports,
            paths.fid_vs_nfe_plot,
            paths.summary_metrics,
            paths.ddim_cell("${item.steps}", "${item.eta}"),
            paths.solver_cell("${item.sampler}", "${item.nfe}"),
        }
        assert declared == {str(path) for path in written}
        assert f"-{EXTRACTOR_NAME}-train.npz" in str(paths.fid_refs["train"])


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"launcher": ""}, "params.yaml: launcher: String should have at least 1 character"),
        ({"figures": {"ddim_steps": 5000}}, "params.yaml: figures.ddim_steps: 5000 exceeds timesteps (1000)"),
        ({"figures": {"reconstruction_steps": [2000]}}, "params.yaml: figures.reconstruction_steps: all exceed"),
        (
            {"ddim_table": {"etas": [0.0, 2.0]}},
            "params.yaml: ddim_table.etas.1: must be a number in [0, 1] or 'sigma_hat' (got 2.0)",
        ),
        ({"fid": {"kid_subset_size": 0}}, "params.yaml: fid.kid_subset_size: Input should be greater than 0"),
    ],
)
def test_new_sections_are_validated_too(patch, message):
    assert _error_of(patch).startswith(message)


def _error_of(patch: dict) -> str:
    """The one-line error of the default params with ``patch`` applied (a section's keys merged into it)."""
    raw = _compose([])
    for key, value in patch.items():
        raw[key] = raw.get(key, {}) | value if isinstance(value, dict) else value
    with pytest.raises(ParamsError) as err:
        validate_params(raw)
    return str(err.value)


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"schedul": "cosine"}, "params.yaml: schedul: unknown key; did you mean 'schedule'?"),
        ({"train": {"stpes": 3}}, "params.yaml: train.stpes: unknown key; did you mean 'steps'?"),
        (
            {"schedule": "cosin"},
            "params.yaml: schedule: Input should be 'linear' or 'cosine' (got 'cosin'); did you mean 'cosine'?",
        ),
        ({"sample": {"sampler": "dpm_solver_pp_3"}}, "did you mean 'dpm_solver_pp_3m'?"),
        ({"schedule": "quadratic"}, "params.yaml: schedule: Input should be 'linear' or 'cosine' (got 'quadratic')"),
        ({"zzz": 1}, "params.yaml: zzz: unknown key"),
    ],
)
def test_a_close_miss_key_or_value_gets_the_nearest_allowed_one(patch, message):
    error = _error_of(patch)
    assert error.endswith(message) and "\n" not in error


def test_every_256px_profile_evaluates_the_bound_in_batches_that_fit_an_80gb_gpu():
    """~325 MiB (ch 128) and ~420 MiB (ch 192) of fp32 activations per 256² image, measured on CPU: the default
    500 would need 158-205 GiB; 128 needs at most ~53 GiB."""
    profiles = sorted(p.stem for p in (ROOT / "conf" / "profile").glob("*.yaml"))
    big = [p for p in profiles if _compose([f"profile={p}"])["data"]["resolution"] >= 256]
    assert len(big) == 7
    for profile in big:
        assert _compose([f"profile={profile}"])["evaluate"]["nll_batch_size"] <= 128, profile


def test_every_profile_samples_and_bounds_as_its_papers_code_did():
    """The decoder's Φ is the authors' tanh everywhere; improved-diffusion's profiles clip x̂0 in DDIM and take
    its DDIM steps, DDPM's (ermongroup/ddim's DDIM) leave x̂0 unclipped."""
    profiles = sorted(p.stem for p in (ROOT / "conf" / "profile").glob("*.yaml"))
    assert _compose([])["decoder_cdf"] == "tanh"
    for profile in profiles:
        raw = _compose([f"profile={profile}"])
        assert raw["decoder_cdf"] == "tanh", profile
        iddpm = "iddpm" in profile
        assert raw["ddim_table"]["clip_denoised"] is (True if iddpm else None), profile
        assert (raw["ddim_table"]["skip"] == "uniform_iddpm") is iddpm, profile
