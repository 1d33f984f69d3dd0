"""The results table: what was run and what it scored, as Markdown."""

from __future__ import annotations

from .config import Params
from .fid import ISC_UNAVAILABLE


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def results_table(params: Params, train: dict, evaluation: dict) -> str:
    sampler = params.sample.sampler.value
    if sampler == "ddim":
        eta = params.sample.eta if isinstance(params.sample.eta, str) else f"{params.sample.eta:g}"
        sampler += f" S={params.sample.steps or params.timesteps} {params.sample.skip.value} η={eta}"
    elif params.sample.respacing or params.sample.steps:
        sampler += f" respaced {params.sample.respacing or params.sample.steps}"
    if "isc" in evaluation:
        isc = f"{evaluation['isc']:.3g} ± {evaluation['isc_std']:.2g}"
    else:
        isc = ISC_UNAVAILABLE if params.evaluate.isc else "not requested"
    rows = [
        ("profile", params.profile),
        ("dataset", params.dataset.value),
        ("schedule / T", f"{params.schedule.value} / {params.timesteps}"),
        ("objective / mean / variance", f"{params.objective.value} / {params.mean_type.value} / "
                                        f"{params.variance.value}"),
        ("parameters", f"{train.get('parameters', 0) / 1e6:.2f}M"),
        ("train steps", _fmt(train.get("steps"))),
        ("final train loss", _fmt(train.get("final_loss"))),
        ("sampler", sampler),
        ("samples", _fmt(evaluation.get("num_samples"))),
        ("FID (vs train / test)", f"{_fmt(evaluation.get('fid_train'))} / {_fmt(evaluation.get('fid_test'))}"),
        ("KID (vs train)", f"{_fmt(evaluation.get('kid'))} ± {_fmt(evaluation.get('kid_std'))}"),
        ("precision / recall (vs train)", f"{_fmt(evaluation.get('precision'))} / {_fmt(evaluation.get('recall'))}"),
        ("IS", isc),
        ("NLL test (bits/dim)", f"{_fmt(evaluation.get('nll_bpd'))} on {_fmt(evaluation.get('nll_images'))} images"),
        ("prior L_T (bits/dim)", _fmt(evaluation.get("prior_bpd"))),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["| " + "quantity".ljust(width) + " | value |", "|" + "-" * (width + 2) + "|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"
