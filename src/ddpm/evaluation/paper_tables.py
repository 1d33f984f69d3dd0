"""The papers' tables, each beside its published numbers: DDPM Tables 1–2, DDIM Tables 1–2, the iDDPM
schedule × objective ablation. Inputs are plain records (params and metrics of evaluated runs), outputs
Markdown and CSV rows; nothing here talks to DVC or MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field

from ddpm.core.options import Sampler


@dataclass(frozen=True)
class TableRow:
    """A row of a paper's grid table: its leading cells, the params its runs have (dotted keys: queued with
    ``dvc exp run -S`` and matched against the evaluated runs), the published values, and params set when the
    row is queued that runs need not match."""

    cells: tuple[str, ...]
    params: dict[str, str]
    paper: tuple[str, ...] = ()
    queue_only: dict[str, str] = field(default_factory=dict)


def _ddpm_row(prediction: str, objective: str, mean: str, obj: str, var: str, *paper: str) -> TableRow:
    # a μ̃-predicting model gives no probability-flow ODE: its FID-vs-NFE cells use the ancestral sampler
    queue_only = {"solver_table.samplers": "[ancestral]"} if mean == "mu" else {}
    params = {"schedule": "linear", "mean_type": mean, "objective": obj, "variance": var}
    return TableRow((prediction, objective), params, paper, queue_only)


# DDPM (Ho et al. 2020) Table 2, unconditional CIFAR10, DDPM's linear schedule: IS, FID; Table 1 adds NLL test
# (train) for the two ε rows with L. "—": the paper reports no value (training unstable / not run).
DDPM_ROWS = (
    _ddpm_row("μ̃ prediction (baseline)", "L, learned diagonal Σ", "mu", "kl", "learned", "7.28 ± 0.10", "23.69", "—"),
    _ddpm_row(
        "μ̃ prediction (baseline)", "L, fixed isotropic Σ", "mu", "kl", "fixed_large", "8.06 ± 0.09", "13.22", "—"
    ),
    _ddpm_row("μ̃ prediction (baseline)", "‖μ̃ − μ̃θ‖²", "mu", "simple", "fixed_large", "—", "—", "—"),
    _ddpm_row("ε prediction (ours)", "L, learned diagonal Σ", "eps", "kl", "learned", "—", "—", "—"),
    _ddpm_row(
        "ε prediction (ours)",
        "L, fixed isotropic Σ",
        "eps",
        "kl",
        "fixed_large",
        "7.67 ± 0.13",
        "13.51",
        "≤ 3.70 (3.69)",
    ),
    _ddpm_row(
        "ε prediction (ours)",
        "‖ε̃ − εθ‖² (L_simple)",
        "eps",
        "simple",
        "fixed_large",
        "9.46 ± 0.11",
        "3.17",
        "≤ 3.75 (3.72)",
    ),
)

# iDDPM (Nichol & Dhariwal 2021) §3's ablation: {linear, cosine} × {L_simple, L_hybrid, L_vlb}; L_hybrid and L_vlb
# learn the variance (learned_range), L_simple keeps σ² = β.
IDDPM_ROWS = tuple(
    TableRow(
        (schedule, f"L_{obj}"),
        {
            "schedule": schedule,
            "mean_type": "eps",
            "objective": obj,
            "variance": "fixed_large" if obj == "simple" else "learned_range",
        },
    )
    for schedule in ("linear", "cosine")
    for obj in ("simple", "hybrid", "vlb")
)

# DDIM (Song et al. 2020) Table 1, CIFAR10 FID for S = 10, 20, 50, 100, 1000.
DDIM_STEPS = (10, 20, 50, 100, 1000)
DDIM_TABLE1 = {
    0.0: (13.36, 6.84, 4.67, 4.16, 4.04),
    0.2: (14.04, 7.11, 4.77, 4.25, 4.09),
    0.5: (16.66, 8.35, 5.25, 4.46, 4.29),
    1.0: (41.07, 18.36, 8.01, 5.78, 4.73),
    "sigma_hat": (367.43, 133.37, 32.72, 9.99, 3.17),
}


@dataclass
class Record:
    """One evaluated run: its params (dotted keys such as ``mean_type``, ``train.steps``; ``fid_reference``: the
    digest of the FID reference statistics it was scored against), metrics, name and the weights' sha256."""

    params: dict
    metrics: dict
    label: str = ""
    model_sha256: str = ""


# What runs must share for their numbers to sit in one table (or compete for the registry's best_fid alias): FIDs
# over other sample counts or references, or of other training lengths, do not compare.
COMPARABLE = ("dataset", "data.resolution", "timesteps", "train.steps", "sample.num_samples", "fid_reference")
COMPARABLE_NAMES = {
    "dataset": "dataset",
    "data.resolution": "resolution",
    "timesteps": "T",
    "train.steps": "training steps",
    "sample.num_samples": "samples",
    "fid_reference": "FID reference",
}


def comparison_key(params: dict) -> dict[str, str | None]:
    """The values of ``COMPARABLE`` in ``params`` (dotted keys), as text; None where absent (matches any run)."""
    return {k: None if params.get(k) is None else str(params[k]) for k in COMPARABLE}


def comparable(records: list[Record], key: dict[str, str | None]) -> list[Record]:
    """The records that agree with ``key`` (its None entries match anything), oldest first."""
    return [r for r in records if all(v is None or str(r.params.get(k)) == v for k, v in key.items())]


def _num(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{float(value):.{digits}f}"


# Paper-scale CIFAR-10 profiles (trained or the authors' released weights): their numbers may sit beside the
# published ones. Any other profile is reduced (fewer steps, a smaller network, T, samples).
PAPER_PROFILES = {
    "cifar10_ddpm",
    "iddpm_cifar10",
    "released_ddpm_cifar10",
    "released_iddpm_cifar10_hybrid",
    "released_iddpm_cifar10_vlb",
}


@dataclass
class Row:
    """A table row's runs: the newest comparable match, and the others (``also_ran``, oldest first)."""

    best: Record | None
    also_ran: list[Record]


def _row(records: list[Record], key: dict, **match) -> Row:
    found = [r for r in comparable(records, key) if all(str(r.params.get(k)) == str(v) for k, v in match.items())]
    return Row(found[-1] if found else None, found[:-1])


def _scale(rec: Record | None) -> str:
    """The training steps and sample count of a row's run, as table cells."""
    if rec is None:
        return "— | —"
    samples = rec.metrics.get("num_samples", rec.params.get("sample.num_samples"))
    return f"{rec.params.get('train.steps', '—')} | {_num(samples, 0) if samples is not None else '—'}"


def also_ran(rows: list[tuple[str, Row]]) -> str:
    """A line per row that more than one comparable run matched: the older runs, with their FIDs."""
    lines = [
        f"- {name}: also ran " + ", ".join(f"{r.label} (FID {_num(r.metrics.get('fid_train'))})" for r in row.also_ran)
        for name, row in rows
        if row.also_ran
    ]
    return ("\nThe newest comparable run fills each row; older ones:\n\n" + "\n".join(lines) + "\n") if lines else ""


def comparison_sentence(key: dict[str, str | None]) -> str:
    """What the rows share with the run the tables are built for, as a sentence."""
    parts = [f"{COMPARABLE_NAMES[k]} {v[:12]}" for k, v in key.items() if v is not None]
    return (
        "Rows come only from runs that share " + ", ".join(parts) + " with it; runs of other lengths, sample "
        "counts or references are left out.\n"
    )


def comparability(params: dict) -> str:
    """What separates this run's setting from the published numbers (CIFAR-10 at paper scale), as a sentence."""
    notes = []
    if params.get("dataset") != "cifar10":
        notes.append(f"these runs are {params.get('dataset')}, the published numbers CIFAR-10")
    if params.get("profile") not in PAPER_PROFILES:
        notes.append(
            f"profile {params.get('profile')} is reduced (T = {params.get('timesteps')}, a smaller network, "
            "fewer steps and samples)"
        )
    if not notes:
        return "Runs and published numbers share dataset and scale; small sample counts still bias FID upwards.\n"
    return "**Not comparable to the published numbers**: " + "; ".join(notes) + ".\n"


def _is_text(m: dict) -> str:
    if "isc" in m:
        return f"{m['isc']:.2f} ± {m.get('isc_std', 0.0):.2f}"
    return "unavailable"


def ddpm_table(records: list[Record], key: dict) -> tuple[str, list[dict]]:
    """DDPM Tables 1–2: IS, FID (vs train) and NLL test for each parameterisation and objective, each row
    (``DDPM_ROWS``) from the newest run comparable with ``key`` (``COMPARABLE``) with that row's params."""
    lines = [
        "| prediction | objective | IS (ours) | IS (paper) | FID (ours) | FID (paper) | NLL test bits/dim (ours) "
        "| NLL test (train) (paper) | steps | samples | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows, found = [], []
    for table_row in DDPM_ROWS:
        (pred, objective), (is_paper, fid_paper, nll_paper) = table_row.cells, table_row.paper
        row = _row(records, key, **table_row.params)
        rec = row.best
        m = rec.metrics if rec else {}
        ours_is = _is_text(m) if rec else "not run"
        lines.append(
            f"| {pred} | {objective} | {ours_is} | {is_paper} | {_num(m.get('fid_train'))} | {fid_paper} "
            f"| {_num(m.get('nll_bpd'), 3)} | {nll_paper} | {_scale(rec)} | {rec.label if rec else '—'} |"
        )
        rows.append(
            {
                "prediction": table_row.params["mean_type"],
                "objective": table_row.params["objective"],
                "variance": table_row.params["variance"],
                "fid": m.get("fid_train"),
                "fid_paper": fid_paper,
                "nll_bpd": m.get("nll_bpd"),
                "nll_paper": nll_paper,
                "isc": m.get("isc"),
                "isc_paper": is_paper,
                "train_steps": rec.params.get("train.steps") if rec else None,
                "num_samples": m.get("num_samples"),
                "run": rec.label if rec else None,
            }
        )
        found.append((f"{pred}, {objective}", row))
    return "\n".join(lines) + "\n" + also_ran(found), rows


def ddim_table(cells: list[dict]) -> tuple[str, list[dict]]:
    """DDIM Table 1: FID for each η (rows) and S (columns), ours beside the paper's as ``ours (paper)``."""
    ours = {(c["eta"], int(c["steps"])): c["fid"] for c in cells if c.get("fid") is not None}
    steps = sorted({s for _, s in ours} | set(DDIM_STEPS))
    etas = list(DDIM_TABLE1) + sorted({e for e, _ in ours} - set(DDIM_TABLE1), key=str)
    lines = ["| η \\ S | " + " | ".join(str(s) for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    rows = []
    for eta in etas:
        cells_text = []
        for s in steps:
            paper = DDIM_TABLE1.get(eta, ())[DDIM_STEPS.index(s)] if s in DDIM_STEPS and eta in DDIM_TABLE1 else None
            mine = ours.get((eta, s))
            cells_text.append(f"{_num(mine)} ({_num(paper)})" if mine is not None or paper is not None else "")
            rows.append({"eta": eta, "steps": s, "fid": mine, "fid_paper": paper})
        name = "σ̂" if eta == "sigma_hat" else f"{eta:g}"
        lines.append(f"| {name} | " + " | ".join(cells_text) + " |")
    return "\n".join(lines) + "\n", rows


def fid_vs_nfe_table(solver_cells: list[dict], ddim_cells: list[dict]) -> tuple[str, list[dict]]:
    """FID against NFE: a row per sampler, a column per NFE. DDIM's row is DDIM Table 1's η = 0 row (S = NFE),
    with the paper's numbers in brackets; no paper reports the other samplers on DDPM's model. A cell whose
    sampler spent fewer calls than its NFE says so."""
    fids = {
        ("ddim", int(c["steps"])): (c["fid"], int(c["steps"]))
        for c in ddim_cells
        if c.get("fid") is not None and c["eta"] == 0.0
    }
    fids |= {
        (c["sampler"], int(c["nfe"])): (c["fid"], int(c.get("network_calls", c["nfe"])))
        for c in solver_cells
        if c.get("fid") is not None
    }
    order = [str(s) for s in Sampler]  # ancestral, ddim, then the solvers as the Sampler enum lists them
    samplers = sorted({s for s, _ in fids}, key=order.index)
    nfes = sorted({n for _, n in fids})
    lines = ["| sampler \\ NFE | " + " | ".join(str(n) for n in nfes) + " |", "|---" * (len(nfes) + 1) + "|"]
    rows = []
    for sampler in samplers:
        texts = []
        for nfe in nfes:
            fid, calls = fids.get((sampler, nfe), (None, nfe))
            paper = DDIM_TABLE1[0.0][DDIM_STEPS.index(nfe)] if sampler == "ddim" and nfe in DDIM_STEPS else None
            text = _num(fid) + (f" ({_num(paper)})" if paper is not None else "")
            texts.append(text + (f" [{calls} calls]" if calls != nfe else "") if fid is not None else "")
            if fid is not None:
                rows.append({"sampler": sampler, "nfe": nfe, "network_calls": calls, "fid": fid, "fid_paper": paper})
        lines.append(f"| {sampler} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n", rows


DIVERGED_MSE = 1.0  # pixels lie in [0, 1]: a larger reconstruction MSE means the decode left the image range
PAPER_SAMPLES = 50_000  # the papers' FID sample count


def diverged_caveat(rows: list[dict]) -> str:
    """In words, for DDIM Table 2's rows whose encode → decode diverged (empty when none did)."""
    bad = [str(r["steps"]) for r in rows if r["mse"] > DIVERGED_MSE]
    if not bad:
        return ""
    return (
        f"S = {', '.join(bad)} diverged: the η = 0 encode → decode left the pixel range (MSE > 1). DDIM's inversion "
        "is ill-conditioned there for this network and schedule; the figure's row shows noise, not a reconstruction."
    )


def mse_text(mse: float) -> str:
    """A reconstruction MSE as the tables print it: four decimals, or marked when it diverged."""
    return f"{mse:.4f}" if mse <= DIVERGED_MSE else f"{mse:.4g} (diverged)"


def sample_count_caveat(n: int) -> str:
    """What an FID from ``n`` samples can say, in words (empty at the papers' 50,000)."""
    if n >= PAPER_SAMPLES:
        return ""
    if n < 1000:
        return (
            f"Only {n} samples per FID: small-sample bias dominates (tens to hundreds of FID points), so these numbers "
            "catch regressions but cannot rank samplers or settings; the papers use 50,000."
        )
    return f"FIDs from {n:,} samples are biased upward against the papers' 50,000-sample values; compare equal counts."


def reconstruction_table(rows: list[dict]) -> str:
    """DDIM Table 2: reconstruction MSE (pixels in [0, 1]) of encode → decode with S steps, η = 0, and a caveat
    under it for any S that diverged."""
    steps = [r["steps"] for r in rows]
    caveat = diverged_caveat(rows)
    return (
        "| S | "
        + " | ".join(str(s) for s in steps)
        + " |\n"
        + "|---" * (len(steps) + 1)
        + "|\n"
        + "| MSE | "
        + " | ".join(mse_text(r["mse"]) for r in rows)
        + " |\n"
        + (f"\n{caveat}\n" if caveat else "")
    )


def iddpm_table(records: list[Record], key: dict) -> tuple[str, list[dict]]:
    """iDDPM's schedule × objective ablation: NLL test and FID for linear/cosine × L_simple/L_hybrid/L_vlb, each
    row (``IDDPM_ROWS``) from the newest run comparable with ``key`` with that row's params."""
    lines = [
        "| schedule | objective | NLL test bits/dim | FID | steps | samples | run |",
        "|---|---|---|---|---|---|---|",
    ]
    rows, found = [], []
    for table_row in IDDPM_ROWS:
        schedule, objective = table_row.cells
        row = _row(records, key, **table_row.params)
        rec = row.best
        m = rec.metrics if rec else {}
        lines.append(
            f"| {schedule} | {objective} | {_num(m.get('nll_bpd'), 3)} | {_num(m.get('fid_train'))} | "
            f"{_scale(rec)} | {rec.label if rec else 'not run'} |"
        )
        rows.append(
            {
                "schedule": schedule,
                "objective": table_row.params["objective"],
                "nll_bpd": m.get("nll_bpd"),
                "fid": m.get("fid_train"),
                "train_steps": rec.params.get("train.steps") if rec else None,
                "num_samples": m.get("num_samples"),
                "run": rec.label if rec else None,
            }
        )
        found.append((f"{schedule}, {objective}", row))
    return "\n".join(lines) + "\n" + also_ran(found), rows
