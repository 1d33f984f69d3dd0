"""The papers' tables, each beside its published numbers: DDPM Tables 1–2, DDIM Tables 1–2, the iDDPM
schedule × objective ablation. Inputs are plain records (params and metrics of evaluated runs), outputs
Markdown and CSV rows; nothing here talks to DVC or MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field

from ddpm.core.options import ODE_SOLVERS, SIGMA_HAT, Sampler, default_clip, solver_conventions


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


def _text(params: dict, key: str) -> str | None:
    """A flattened param as text, None where absent or null (params logged to MLflow are text: "None")."""
    value = params.get(key)
    return None if value is None or str(value) in ("None", "null") else str(value)


def sampler_setting(params: dict) -> str | None:
    """How a run's samples were drawn, in words, from its flattened params (values or their logged text): the
    sampler, its steps (DDIM: S, skip and η; an ODE solver: NFE, grid and end; ancestral: all T or respaced) and
    whether x̂0 was clipped. None where the params do not name a sampler."""
    sampler = _text(params, "sample.sampler")
    if sampler is None:
        return None
    T, steps = _text(params, "timesteps"), _text(params, "sample.steps")
    eta_text = _text(params, "sample.eta") or "0.0"
    eta = eta_text if eta_text == SIGMA_HAT else float(eta_text)
    clip = _text(params, "sample.clip_denoised")
    clipped = default_clip(sampler, eta) if clip is None else clip.lower() == "true"
    x0 = "x̂0 clipped" if clipped else "x̂0 unclipped"
    if sampler == Sampler.DDIM:
        eta_shown = eta if isinstance(eta, str) else f"{eta:g}"
        return f"ddim S={steps or T} {_text(params, 'sample.skip') or 'uniform'} η={eta_shown}, {x0}"
    if sampler in ODE_SOLVERS:
        spacing, end = solver_conventions(
            sampler,
            _text(params, "sample.solver_spacing") or "auto",
            _text(params, "sample.solver_end") or "auto",
            int(_text(params, "data.resolution") or 32),
        )
        return f"{sampler} NFE={steps} {spacing.value} {end.value}, {x0}"
    respacing = _text(params, "sample.respacing") or (steps if steps != T else None)  # all T steps: none
    return f"ancestral respaced {respacing}, {x0}" if respacing else f"ancestral, all {T or 'T'} steps, {x0}"


# What runs must share for their numbers to sit in one table (or compete for the registry's best_fid alias): FIDs
# over other sample counts or references, of other training lengths, or drawn by another sampler do not compare.
COMPARABLE = (
    "dataset",
    "data.resolution",
    "timesteps",
    "train.steps",
    "sample.num_samples",
    "fid_reference",
    "sampler",  # sampler_setting: the sampler, its steps, η, skip or grid, respacing and clipping
)
COMPARABLE_NAMES = {
    "dataset": "dataset",
    "data.resolution": "resolution",
    "timesteps": "T",
    "train.steps": "training steps",
    "sample.num_samples": "samples",
    "fid_reference": "FID reference",
    "sampler": "sampler",
}


def _comparable_value(params: dict, key: str) -> str | None:
    if key == "sampler":
        return sampler_setting(params)
    return None if params.get(key) is None else str(params[key])


def comparison_key(params: dict) -> dict[str, str | None]:
    """The values of ``COMPARABLE`` in ``params`` (dotted keys; ``sampler``: ``sampler_setting``), as text; None
    where absent (matches any run)."""
    return {k: _comparable_value(params, k) for k in COMPARABLE}


def comparable(records: list[Record], key: dict[str, str | None]) -> list[Record]:
    """The records that agree with ``key`` (its None entries match anything), oldest first."""
    return [r for r in records if all(v is None or _comparable_value(r.params, k) == v for k, v in key.items())]


def same_evaluation(record: Record, current: Record, key: dict[str, str | None]) -> bool:
    """Whether ``record`` evaluated the same weights as ``current`` the same way (``key``: its comparison key)."""
    same_weights = bool(current.model_sha256) and record.model_sha256 == current.model_sha256
    return same_weights and comparison_key(record.params) == key


# The samplers behind the published numbers: DDPM's Tables 1–2 (its run_cifar.py: all 1000 ancestral steps, x̂0
# clipped), DDIM's Table 1 on CIFAR-10 (the quadratic τ of T = 1000, x̂0 as its code: unclipped, σ̂ clipped).
DDPM_SAMPLER = "ancestral, all 1000 steps, x̂0 clipped"
DDIM_TABLE_SETTING = "quad τ of T = 1000, x̂0 as DDIM's code: η unclipped, σ̂ clipped"


def ddim_table_setting(params: dict) -> str:
    """How DDIM Table 1's cells were drawn (``ddim_table``), in the words of ``DDIM_TABLE_SETTING``."""
    clip = _text(params, "ddim_table.clip_denoised")
    clipping = (
        "x̂0 as DDIM's code: η unclipped, σ̂ clipped"
        if clip is None
        else f"x̂0 {'clipped' if clip.lower() == 'true' else 'unclipped'}"
    )
    return f"{_text(params, 'ddim_table.skip') or 'uniform'} τ of T = {_text(params, 'timesteps')}, {clipping}"


def published_beside(ours: str | None, papers: str, what: str) -> str:
    """A sentence under a table: why the published numbers are shown beside ours, or left out."""
    if ours == papers:
        return ""
    return (
        f"\nThe published {what} are left out: these runs sampled {ours or 'with a sampler not recorded'}; "
        f"the paper's were sampled {papers}.\n"
    )


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
    shown = {"fid_reference": lambda v: v[:12], "sampler": lambda v: f"({v})"}
    parts = [f"{COMPARABLE_NAMES[k]} {shown.get(k, str)(v)}" for k, v in key.items() if v is not None]
    return (
        "Rows come only from runs that share " + ", ".join(parts) + " with it; runs of other lengths, sample "
        "counts, references or samplers are left out.\n"
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


OTHER_SAMPLER = "not this sampler"  # a published IS or FID cell where our runs sampled otherwise than the paper


def _is_text(m: dict) -> str:
    if "isc" in m:
        return f"{m['isc']:.2f} ± {m.get('isc_std', 0.0):.2f}"
    return "unavailable"


def ddpm_table(records: list[Record], key: dict) -> tuple[str, list[dict]]:
    """DDPM Tables 1–2: IS, FID (vs train) and NLL test for each parameterisation and objective, each row
    (``DDPM_ROWS``) from the newest run comparable with ``key`` (``COMPARABLE``) with that row's params."""
    lines = [
        "| prediction | objective | sampler | IS (ours) | IS (paper) | FID (ours) | FID (paper) "
        "| NLL test bits/dim (ours) | NLL test (train) (paper) | steps | samples | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sampler = key.get("sampler")
    papers_sampler = sampler == DDPM_SAMPLER  # IS and FID depend on it; the bound (NLL) does not
    rows, found = [], []
    for table_row in DDPM_ROWS:
        (pred, objective), (is_paper, fid_paper, nll_paper) = table_row.cells, table_row.paper
        if not papers_sampler:
            is_paper = fid_paper = OTHER_SAMPLER
        row = _row(records, key, **table_row.params)
        rec = row.best
        m = rec.metrics if rec else {}
        ours_is = _is_text(m) if rec else "not run"
        ran = (sampler_setting(rec.params) or "—") if rec else "—"
        lines.append(
            f"| {pred} | {objective} | {ran} | {ours_is} | {is_paper} | {_num(m.get('fid_train'))} | {fid_paper} "
            f"| {_num(m.get('nll_bpd'), 3)} | {nll_paper} | {_scale(rec)} | {rec.label if rec else '—'} |"
        )
        rows.append(
            {
                "prediction": table_row.params["mean_type"],
                "objective": table_row.params["objective"],
                "variance": table_row.params["variance"],
                "sampler": sampler_setting(rec.params) if rec else None,
                "fid": m.get("fid_train"),
                "fid_paper": fid_paper if papers_sampler else None,
                "nll_bpd": m.get("nll_bpd"),
                "nll_paper": nll_paper,
                "isc": m.get("isc"),
                "isc_paper": is_paper if papers_sampler else None,
                "train_steps": rec.params.get("train.steps") if rec else None,
                "num_samples": m.get("num_samples"),
                "run": rec.label if rec else None,
            }
        )
        found.append((f"{pred}, {objective}", row))
    note = published_beside(sampler, DDPM_SAMPLER, "IS and FID")
    return "\n".join(lines) + "\n" + note + also_ran(found), rows


def ddim_table(cells: list[dict], published: bool = True) -> tuple[str, list[dict]]:
    """DDIM Table 1: FID for each η (rows) and S (columns), ours beside the paper's as ``ours (paper)``; the
    paper's left out unless ``published`` (the cells were drawn as DDIM's: ``DDIM_TABLE_SETTING``)."""
    ours = {(c["eta"], int(c["steps"])): c["fid"] for c in cells if c.get("fid") is not None}
    ran_steps, ran_etas = {s for _, s in ours}, {e for e, _ in ours}
    steps = sorted(ran_steps | set(DDIM_STEPS)) if published else sorted(ran_steps)
    etas = [e for e in DDIM_TABLE1 if published or e in ran_etas] + sorted(ran_etas - set(DDIM_TABLE1), key=str)
    lines = ["| η \\ S | " + " | ".join(str(s) for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    rows = []
    for eta in etas:
        cells_text = []
        for s in steps:
            paper = _ddim_paper(eta, s) if published else None
            mine = ours.get((eta, s))
            if published:
                cells_text.append(f"{_num(mine)} ({_num(paper)})" if mine is not None or paper is not None else "")
            else:
                cells_text.append(_num(mine) if mine is not None else "")
            kid = next((c for c in cells if (c["eta"], int(c["steps"])) == (eta, s) and c.get("kid") is not None), {})
            rows.append(
                {"eta": eta, "steps": s, "fid": mine, "fid_paper": paper} | {k: kid.get(k) for k in ("kid", "kid_std")}
            )
        name = "σ̂" if eta == "sigma_hat" else f"{eta:g}"
        lines.append(f"| {name} | " + " | ".join(cells_text) + " |")
    return "\n".join(lines) + "\n", rows


def _ddim_paper(eta, steps: int) -> float | None:
    """DDIM Table 1's published FID at (η, S), if it has one."""
    return DDIM_TABLE1[eta][DDIM_STEPS.index(steps)] if steps in DDIM_STEPS and eta in DDIM_TABLE1 else None


def fid_vs_nfe_table(
    solver_cells: list[dict], ddim_cells: list[dict], published: bool = True
) -> tuple[str, list[dict]]:
    """FID against NFE: a row per sampler, a column per NFE. DDIM's row is DDIM Table 1's η = 0 row (S = NFE),
    with the paper's numbers in brackets when ``published`` (drawn as DDIM's); no paper reports the other samplers
    on DDPM's model. A cell whose sampler spent fewer calls than its NFE says so."""
    cells = _nfe_cells(solver_cells, ddim_cells)
    fids = {k: (c["fid"], int(c.get("network_calls", k[1]))) for k, c in cells.items() if c.get("fid") is not None}
    kids = {key: (c["kid"], c["kid_std"]) for key, c in cells.items() if c.get("kid") is not None}
    order = [str(s) for s in Sampler]  # ancestral, ddim, then the solvers as the Sampler enum lists them
    samplers = sorted({s for s, _ in fids}, key=order.index)
    nfes = sorted({n for _, n in fids})
    lines = ["| sampler \\ NFE | " + " | ".join(str(n) for n in nfes) + " |", "|---" * (len(nfes) + 1) + "|"]
    rows = []
    for sampler in samplers:
        texts = []
        for nfe in nfes:
            fid, calls = fids.get((sampler, nfe), (None, nfe))
            paper = _ddim_paper(0.0, nfe) if sampler == "ddim" and published else None
            text = _num(fid) + (f" ({_num(paper)})" if paper is not None else "")
            texts.append(text + (f" [{calls} calls]" if calls != nfe else "") if fid is not None else "")
            if fid is not None:
                row = {"sampler": sampler, "nfe": nfe, "network_calls": calls, "fid": fid, "fid_paper": paper}
                rows.append(row | dict(zip(("kid", "kid_std"), kids.get((sampler, nfe), (None, None)), strict=True)))
        lines.append(f"| {sampler} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n", rows


def _nfe_cells(solver_cells: list[dict], ddim_cells: list[dict]) -> dict[tuple[str, int], dict]:
    """The FID-vs-NFE table's cells by (sampler, NFE): DDIM's are Table 1's η = 0 cells (S = NFE)."""
    ddim = {("ddim", int(c["steps"])): c for c in ddim_cells if c["eta"] == 0.0}
    return ddim | {(c["sampler"], int(c["nfe"])): c for c in solver_cells}


def kid_table(solver_cells: list[dict] | None, ddim_cells: list[dict]) -> str:
    """KID × 10³ ± its standard deviation over subsets, a row per η and a column per S (DDIM Table 1's cells;
    ``solver_cells`` None) or a row per sampler and a column per NFE; empty when no cell has a KID. KID is
    unbiased, so it ranks settings at sample counts where FID's bias dominates."""
    order = [str(s) for s in Sampler]

    def row_order(row) -> tuple:  # η: the numbers, then σ̂; samplers: as the Sampler enum lists them
        return (isinstance(row, str), row) if solver_cells is None else (False, order.index(row))

    if solver_cells is None:
        cells = {(c["eta"], int(c["steps"])): c for c in ddim_cells}
        head, name = "η \\ S", lambda eta: "σ̂" if eta == SIGMA_HAT else f"{eta:g}"
    else:
        cells = _nfe_cells(solver_cells, ddim_cells)
        head, name = "sampler \\ NFE", str
    kids = {key: c for key, c in cells.items() if c.get("kid") is not None}
    if not kids:
        return ""
    rows, columns = sorted({r for r, _ in kids}, key=row_order), sorted({n for _, n in kids})
    lines = [f"| {head} | " + " | ".join(str(n) for n in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        texts = [
            f"{1e3 * kids[r, n]['kid']:.2f} ± {1e3 * kids[r, n]['kid_std']:.2f}" if (r, n) in kids else ""
            for n in columns
        ]
        lines.append(f"| {name(r)} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


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
        "| schedule | objective | sampler | NLL test bits/dim | FID | steps | samples | run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows, found = [], []
    for table_row in IDDPM_ROWS:
        schedule, objective = table_row.cells
        row = _row(records, key, **table_row.params)
        rec = row.best
        m = rec.metrics if rec else {}
        lines.append(
            f"| {schedule} | {objective} | {(sampler_setting(rec.params) or '—') if rec else '—'} "
            f"| {_num(m.get('nll_bpd'), 3)} | {_num(m.get('fid_train'))} | "
            f"{_scale(rec)} | {rec.label if rec else 'not run'} |"
        )
        rows.append(
            {
                "schedule": schedule,
                "objective": table_row.params["objective"],
                "sampler": sampler_setting(rec.params) if rec else None,
                "nll_bpd": m.get("nll_bpd"),
                "fid": m.get("fid_train"),
                "train_steps": rec.params.get("train.steps") if rec else None,
                "num_samples": m.get("num_samples"),
                "run": rec.label if rec else None,
            }
        )
        found.append((f"{schedule}, {objective}", row))
    return "\n".join(lines) + "\n" + also_ran(found), rows
