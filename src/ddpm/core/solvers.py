"""ODE samplers of a discrete-time diffusion beyond DDIM, on the continuous schedule of ``flow``: DPM-Solver
(Lu et al. 2022a), DPM-Solver++ (Lu et al. 2022b), UniPC (Zhao et al. 2023) and EDM's Heun step (Karras et al.
2022). Each walks a ``Grid`` with one network call per grid step (a Heun move: two) and returns (x, calls); it
ends as the grid says: at step 0, or ``clean`` (the move to σ = 0 is x̂0 of the last call). ``ode_sample`` builds
the grid a budget of network calls (NFE) buys for each method.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
import torch

from .diffusion import GaussianDiffusion, Model
from .flow import Evaluations, Grid, NoiseSchedule, spaced, time_grid
from .options import ODE_SOLVERS, End, OptionError, Sampler, TimeSpacing, parse_enum, solver_conventions

SINGLESTEP_ORDERS = (1, 2, 3)
DPM_SOLVER_CLIP_LAMBDA = -5.1  # DPM-Solver's code: λ clipped here for discrete schedules (its numerical_clip_alpha)
DPM_SOLVER_FAMILY = (Sampler.DPM_SOLVER_PP_2M, Sampler.DPM_SOLVER_PP_3M, Sampler.DPM_SOLVER_2, Sampler.DPM_SOLVER_3)
UNIPC = {  # sampler → (order, B(h))
    Sampler.UNIPC_2: (2, "bh2"),
    Sampler.UNIPC_3: (3, "bh2"),
    Sampler.UNIPC_BH1_2: (2, "bh1"),
    Sampler.UNIPC_BH1_3: (3, "bh1"),
}
LOWER_ORDER_BELOW = 10  # DPM-Solver++(2M): a first-order last move below this many moves (authors' code; diffusers: 15)


class UniPCVariant(StrEnum):
    """UniPC's B(h) (its code's ``variant``): the factor of the predictor's and corrector's residuals."""

    BH1 = "bh1"  # B(h) = h: UniPC's unconditional sampling scripts
    BH2 = "bh2"  # B(h) = e^h − 1: its guided-sampling recommendation, and diffusers' default


class SolverType(StrEnum):
    """The coefficient of DPM-Solver's singlestep differences (its code's ``solver_type``)."""

    DPMSOLVER = "dpmsolver"  # DPM-Solver Algorithms 1 and 2 (diffusers' "midpoint" at order 2)
    TAYLOR = "taylor"  # the Taylor-expanded coefficients φ2, φ3 (diffusers' "heun")


class _Walk:
    """λ, α, σ at the grid's steps and at its end (λ = ∞, α = 1, σ = 0 after the last step when it ends clean)."""

    def __init__(self, evaluate: Evaluations, grid: Grid):
        self.steps, self.moves = grid.steps, grid.moves
        self.lam = evaluate.schedule.lam(grid.steps)
        self.alpha, self.sigma = evaluate.schedule.alpha_sigma(grid.steps)
        if grid.end is End.CLEAN:
            self.lam = np.append(self.lam, np.inf)
            self.alpha, self.sigma = np.append(self.alpha, 1.0), np.append(self.sigma, 0.0)

        self.start_scale = grid.start_scale

    def start(self, x_T: torch.Tensor) -> torch.Tensor:
        """x at the grid's first step: x_T, scaled for EDM's grid."""
        return x_T if self.start_scale == 1.0 else x_T * self.start_scale

    def is_clean(self, j: int) -> bool:
        return j == len(self.steps)

    def first_order_eps(self, x: torch.Tensor, s: int, t: int, eps: torch.Tensor) -> torch.Tensor:
        """DPM-Solver-1 (DPM-Solver eq. 3.7; DDIM): x_t = (α_t/α_s) x_s − σ_t (e^h − 1) ε_s."""
        h = self.lam[t] - self.lam[s]
        return float(self.alpha[t] / self.alpha[s]) * x - float(self.sigma[t] * np.expm1(h)) * eps


def dpm_solver_multistep(
    diffusion: GaussianDiffusion,
    model: Model,
    x_T: torch.Tensor,
    grid: Grid,
    *,
    order: int = 2,
    lower_order_final: bool = True,
    lower_order_below: int = LOWER_ORDER_BELOW,
    clip_denoised: bool = False,
) -> tuple[torch.Tensor, int]:
    """DPM-Solver++(1M/2M/3M) (DPM-Solver++ Algorithm 2 and its code's third order, data prediction): each move
    from s to t with h = λ_t − λ_s, φ1 = e^{−h} − 1, φ2 = φ1/h + 1, φ3 = φ2/h − 1/2 and the x̂0 of the last calls,

        order 1:  x_t = (σ_t/σ_s) x_s − α_t φ1 D0,                    D0 = x̂0(s)
        order 2:  x_t = (σ_t/σ_s) x_s − α_t φ1 (D0 + D1,0 / 2),       D1,0 = (x̂0(s) − x̂0(s')) / r0
        order 3:  x_t = (σ_t/σ_s) x_s − α_t φ1 D0 + α_t φ2 D1 − α_t φ3 D2,
                  D1 = D1,0 + r0/(r0 + r1) (D1,0 − D1,1),  D2 = (D1,0 − D1,1)/(r0 + r1),

    with s', s'' the steps before s, r0 = (λ_s − λ_s')/h, r1 = (λ_s' − λ_s'')/h, D1,1 = (x̂0(s') − x̂0(s''))/r1.
    The order ramps up over the first moves; with ``lower_order_final`` and fewer than ``lower_order_below`` moves
    between the grid's steps, down over the last ones, min(order, moves left) (the authors' code: 10, for
    stability at few steps; diffusers' ``lower_order_final``: 15)."""
    if order not in (1, 2, 3):
        raise OptionError("order", f"DPM-Solver++ multistep is implemented for orders 1 to 3, got {order}")
    evaluate = Evaluations(diffusion, model, clip_denoised)
    walk = _Walk(evaluate, grid)
    x, previous = walk.start(x_T), list[torch.Tensor]()
    few = lower_order_final and len(walk.steps) - 1 < lower_order_below
    for i in range(walk.moves):
        x0, _ = evaluate(x, float(walk.steps[i]))
        if walk.is_clean(i + 1):
            return x0, evaluate.calls
        p = min(order, i + 1, walk.moves - i if few else order)
        h = walk.lam[i + 1] - walk.lam[i]
        update = x0
        if p == 2:
            update = x0 + (x0 - previous[-1]) * (h / (2.0 * (walk.lam[i] - walk.lam[i - 1])))
        x = float(walk.sigma[i + 1] / walk.sigma[i]) * x - float(walk.alpha[i + 1] * np.expm1(-h)) * update
        if p == 3:
            x = x + _third_order_terms(walk, i, h, x0, previous)
        previous = [*previous[-1:], x0]
    return x, evaluate.calls


def _third_order_terms(walk: _Walk, i: int, h: float, x0: torch.Tensor, previous: list[torch.Tensor]) -> torch.Tensor:
    """DPM-Solver++(3M)'s terms beyond the first order, α_t φ2 D1 − α_t φ3 D2, for the move from grid step i."""
    r0, r1 = (walk.lam[i] - walk.lam[i - 1]) / h, (walk.lam[i - 1] - walk.lam[i - 2]) / h
    d10, d11 = (x0 - previous[-1]) / float(r0), (previous[-1] - previous[-2]) / float(r1)
    d1, d2 = d10 + float(r0 / (r0 + r1)) * (d10 - d11), (d10 - d11) / float(r0 + r1)
    phi2 = np.expm1(-h) / h + 1.0
    phi3 = phi2 / h - 0.5
    return float(walk.alpha[i + 1] * phi2) * d1 - float(walk.alpha[i + 1] * phi3) * d2


def singlestep_orders(nfe: int, order: int) -> list[int]:
    """The orders of the singlestep moves that spend ``nfe`` calls (DPM-Solver §3.4 and its code): as many moves
    of ``order`` as fit, the rest of lower order (order 3: NFE = 3k → 3,…,3,2,1; 3k + 1 → 3,…,3,1; 3k + 2 → 3,…,3,2)."""
    if order not in SINGLESTEP_ORDERS:
        raise OptionError("order", f"DPM-Solver singlestep has orders 1, 2 and 3, got {order}")
    if order == 3:
        k, rest = divmod(nfe, 3)
        return [3] * (k - 1) + [2, 1] if rest == 0 and k > 0 else [3] * k + [rest] * (rest > 0)
    return [order] * (nfe // order) + [1] * (nfe % order)


def singlestep_grid(
    schedule: NoiseSchedule, orders: Sequence[int], spacing: str | TimeSpacing, end: str | End = End.STEP0
) -> Grid:
    """The grid of a singlestep solver making moves of ``orders``, as the authors' code builds it: the moves' ends
    uniform over the moves (``logsnr``, ``karras``) or, otherwise, at the moves' boundaries in the grid with one
    step per call; a move of order k from s to t calls the network at k points spaced the same way from s to t
    (its intermediate λ fractions r1 (, r2): 1/2 and 1/3, 2/3 in λ for ``logsnr``). A ``clean`` end spends the
    last order-1 entry on x̂0 at step 0 (the authors' ``denoise_to_zero``)."""
    spacing, end = parse_enum(TimeSpacing, spacing, "spacing"), parse_enum(End, end, "end")
    moving = list(orders[:-1] if end is End.CLEAN else orders)
    if end is End.CLEAN and (not orders or orders[-1] != 1):
        raise OptionError("orders", f"a clean end needs a last order-1 entry (x̂0), got {list(orders)}")
    first = schedule.num_timesteps - 1.0
    if not moving:
        return Grid(np.array([first]), end)
    if spacing in (TimeSpacing.LOGSNR, TimeSpacing.KARRAS):
        ends = spaced(schedule, first, 0.0, len(moving) + 1, spacing)
    else:
        ends = spaced(schedule, first, 0.0, sum(moving) + 1, spacing)[np.cumsum([0, *moving])]
    points = []
    for k, s, t in zip(moving, ends[:-1], ends[1:], strict=True):
        points += list(spaced(schedule, s, t, k + 1, spacing)[:-1])
    return Grid(np.array([*points, ends[-1]]), end)


def dpm_solver_singlestep(
    diffusion: GaussianDiffusion,
    model: Model,
    x_T: torch.Tensor,
    grid: Grid,
    orders: Sequence[int],
    *,
    solver_type: str | SolverType = SolverType.DPMSOLVER,
    clip_denoised: bool = False,
) -> tuple[torch.Tensor, int]:
    """DPM-Solver-1/2/3 (DPM-Solver Algorithms 1 and 2, noise prediction): moves of ``orders``, a move of order k
    taking the next k grid steps as s and its intermediates s1 (, s2), ending at the grid step after them. With
    h = λ_t − λ_s and r_i = (λ_{s_i} − λ_s)/h, u1 the first-order move to s1, D_i = ε(u_i, s_i) − ε(x_s, s):

        order 2:  x_t = first-order(x_s → t) − σ_t/(2 r1) (e^h − 1) D1                           (Algorithm 1)
        order 3:  u2 = first-order(x_s → s2) − σ_{s2} (r2/r1) ((e^{r2 h} − 1)/(r2 h) − 1) D1
                  x_t = first-order(x_s → t) − (σ_t/r2) ((e^h − 1)/h − 1) D2                   (Algorithm 2)

    ``taylor`` replaces the last lines by the Taylor coefficients φ2 = (e^h − 1)/h − 1, φ3 = φ2/h − 1/2."""
    solver_type = parse_enum(SolverType, solver_type, "solver_type")
    evaluate = Evaluations(diffusion, model, clip_denoised)
    walk = _Walk(evaluate, grid)
    calls = len(walk.steps) - (grid.end is End.STEP0)
    if sum(orders) != calls or (grid.end is End.CLEAN and orders[-1] != 1) or min(orders) < 1 or max(orders) > 3:
        raise OptionError("orders", f"{list(orders)} does not spend the grid's {calls} calls ({grid.end} end)")
    x, i = walk.start(x_T), 0
    for k in orders:
        x0, eps = evaluate(x, float(walk.steps[i]))
        t = i + k
        if walk.is_clean(t):
            return x0, evaluate.calls
        h = walk.lam[t] - walk.lam[i]
        x_t = walk.first_order_eps(x, i, t, eps)
        if k >= 2:
            r1 = (walk.lam[i + 1] - walk.lam[i]) / h
            _, e1 = evaluate(walk.first_order_eps(x, i, i + 1, eps), float(walk.steps[i + 1]))
            d1 = e1 - eps
        if k == 2 and solver_type is SolverType.DPMSOLVER:
            x_t = x_t - float(walk.sigma[t] / (2.0 * r1) * np.expm1(h)) * d1
        elif k == 2:
            x_t = x_t - float(walk.sigma[t] / r1 * (np.expm1(h) / h - 1.0)) * d1
        elif k == 3:
            r2 = (walk.lam[i + 2] - walk.lam[i]) / h
            u2 = (
                walk.first_order_eps(x, i, i + 2, eps)
                - float(walk.sigma[i + 2] * r2 / r1 * (np.expm1(r2 * h) / (r2 * h) - 1.0)) * d1
            )
            _, e2 = evaluate(u2, float(walk.steps[i + 2]))
            d2 = e2 - eps
            phi2 = np.expm1(h) / h - 1.0
            if solver_type is SolverType.DPMSOLVER:
                x_t = x_t - float(walk.sigma[t] / r2 * phi2) * d2
            else:
                slope, curve = (r2 * d1 / r1 - r1 * d2 / r2) / (r2 - r1), 2.0 * (d2 / r2 - d1 / r1) / (r2 - r1)
                x_t = x_t - float(walk.sigma[t] * phi2) * slope - float(walk.sigma[t] * (phi2 / h - 0.5)) * curve
        x, i = x_t, t
    return x, evaluate.calls


def _b_of_h(hh: float, variant: UniPCVariant) -> float:
    """UniPC's B(h) at hh (−h for data prediction): hh ("bh1") or e^{hh} − 1 ("bh2")."""
    return float(hh) if variant is UniPCVariant.BH1 else float(np.expm1(hh))


def _unipc_coefficients(
    rks: np.ndarray, hh: float, order: int, corrector: bool, variant: UniPCVariant = UniPCVariant.BH2
) -> np.ndarray:
    """UniPC's ρ (its Theorem 3 system): R ρ = b with R_ij = r_j^(i−1), b_i = i! φ_{i+1}(hh) hh / B(h); the
    predictor solves the system without its last row and column. The authors' shortcuts: ρ = 1/2 for the
    order-2 predictor and the order-1 corrector, whatever B(h)."""
    if order == 1 and corrector or order == 2 and not corrector:
        return np.array([0.5])
    b_h, phi, factorial, b = _b_of_h(hh, variant), np.expm1(hh) / hh - 1.0, 1.0, []
    for i in range(1, order + 1):
        b.append(phi * factorial / b_h)
        factorial *= i + 1
        phi = phi / hh - 1.0 / factorial
    R = np.stack([rks ** (i - 1) for i in range(1, order + 1)])
    if corrector:
        return np.linalg.solve(R, np.array(b))
    return np.linalg.solve(R[:-1, :-1], np.array(b[:-1]))


def _unipc_move(
    walk: _Walk,
    x: torch.Tensor,
    s: int,
    outputs: list[torch.Tensor],
    order: int,
    new: torch.Tensor | None = None,
    variant: UniPCVariant = UniPCVariant.BH2,
) -> torch.Tensor:
    """UniP (``new`` None) or UniC (``new`` = x̂0 at the move's end) of ``order`` from grid step s to s + 1, data
    prediction: x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) x̂0_s − α_t B(−h) Σ ρ_k D_k."""
    t = s + 1
    h = walk.lam[t] - walk.lam[s]
    m0 = outputs[s]
    x_t = float(walk.sigma[t] / walk.sigma[s]) * x - float(walk.alpha[t] * np.expm1(-h)) * m0
    if order == 1 and new is None:
        return x_t
    rks = np.array([(walk.lam[s - k] - walk.lam[s]) / h for k in range(1, order)] + [1.0])
    differences = [(outputs[s - k] - m0) / float(rks[k - 1]) for k in range(1, order)]
    if new is not None:
        differences.append(new - m0)
    rhos = _unipc_coefficients(rks, -h, order, corrector=new is not None, variant=variant)
    residual = sum(float(rho) * d for rho, d in zip(rhos, differences, strict=True))
    return x_t - float(walk.alpha[t] * _b_of_h(-h, variant)) * residual


def unipc(
    diffusion: GaussianDiffusion,
    model: Model,
    x_T: torch.Tensor,
    grid: Grid,
    *,
    order: int = 3,
    variant: str | UniPCVariant = UniPCVariant.BH2,
    lower_order_final: bool = True,
    clip_denoised: bool = False,
) -> tuple[torch.Tensor, int]:
    """UniPC-p, data prediction (UniPC Algorithms 1–2), B(h) = h (``bh1``) or e^h − 1 (``bh2``): each move is
    predicted by UniP of order p from the last p calls; the call at its end then corrects it by UniC (order
    p + 1) and is reused for the next move, so there is one call per grid step and none after the last move,
    which stays uncorrected. The order ramps up over the first moves and, with ``lower_order_final``, down over
    the last ones (min(p, moves left): the authors' and diffusers' rule); the move to σ = 0 of a clean end is x̂0."""
    if order not in (1, 2, 3):
        raise OptionError("order", f"UniPC is implemented for orders 1 to 3, got {order}")
    variant = parse_enum(UniPCVariant, variant, "variant")
    evaluate = Evaluations(diffusion, model, clip_denoised)
    walk = _Walk(evaluate, grid)
    x, outputs, last = walk.start(x_T), [], None
    for i in range(walk.moves):
        x0, _ = evaluate(x, float(walk.steps[i]))
        if last is not None:
            x = _unipc_move(walk, last[0], i - 1, outputs, last[1], new=x0, variant=variant)
        outputs.append(x0)
        p = min(order, i + 1, walk.moves - i if lower_order_final else order)
        if walk.is_clean(i + 1):
            return x0, evaluate.calls
        last = (x, p)
        x = _unipc_move(walk, x, i, outputs, p, variant=variant)
    return x, evaluate.calls


def heun(
    diffusion: GaussianDiffusion, model: Model, x_T: torch.Tensor, grid: Grid, *, clip_denoised: bool = False
) -> tuple[torch.Tensor, int]:
    """EDM's deterministic sampler (EDM Algorithm 1, S_churn = 0) on the process's own schedule: in x̃ = x/α and
    σ̃ = σ/α the flow is dx̃/dσ̃ = ε(x, σ̃), and each move is a Heun step (two calls); the move to σ = 0 of a clean
    end is an Euler step, x̂0 of the last call. An Euler move here is a DDIM step."""
    evaluate = Evaluations(diffusion, model, clip_denoised)
    walk = _Walk(evaluate, grid)
    x = walk.start(x_T)
    for i in range(walk.moves):
        _, eps = evaluate(x, float(walk.steps[i]))
        x_tilde = x / float(walk.alpha[i])
        d_sigma = float(walk.sigma[i + 1] / walk.alpha[i + 1] - walk.sigma[i] / walk.alpha[i])
        euler = x_tilde + d_sigma * eps
        if not walk.is_clean(i + 1):
            _, eps_next = evaluate(float(walk.alpha[i + 1]) * euler, float(walk.steps[i + 1]))
            euler = x_tilde + d_sigma * (eps + eps_next) / 2
        x = float(walk.alpha[i + 1]) * euler
    return x, evaluate.calls


def calls_spent(sampler: str | Sampler, nfe: int, end: str | End) -> int:
    """The network calls a budget of ``nfe`` buys: all of them, but Heun's moves take two calls each (one for a
    clean end's Euler move), so a budget of the other parity leaves one call unspent. (EDM's grid may need fewer
    still where its levels repeat a step: ``grid_calls``.)"""
    sampler = parse_enum(Sampler, sampler, "sampler")
    clean = parse_enum(End, end, "end") is End.CLEAN
    if sampler is Sampler.HEUN and nfe % 2 == (0 if clean else 1):
        return nfe - 1
    return nfe


def grid_calls(sampler: str | Sampler, grid: Grid, orders: Sequence[int] = ()) -> int:
    """The network calls a solver makes on ``grid``: one per move (the multistep methods), k per singlestep
    move of order k, two per Heun move but one for the move to σ = 0 of a clean end."""
    sampler = parse_enum(Sampler, sampler, "sampler")
    if orders:
        return sum(orders)
    if sampler is Sampler.HEUN:
        return 2 * grid.moves - (grid.end is End.CLEAN)
    return grid.moves


def solver_grid(
    diffusion: GaussianDiffusion,
    sampler: str | Sampler,
    nfe: int,
    spacing: str | TimeSpacing,
    end: str | End,
    clip_lambda: float | None = DPM_SOLVER_CLIP_LAMBDA,
) -> tuple[Grid, list[int]]:
    """The grid (and, for DPM-Solver singlestep, the orders) that spends ``calls_spent(sampler, nfe, end)``
    calls: one per grid step for the multistep methods, two per Heun move. The DPM-Solver family's grids span
    the steps whose λ is at least ``clip_lambda`` (its authors' code; None: all steps)."""
    sampler = parse_enum(Sampler, sampler, "sampler")
    spacing, end = parse_enum(TimeSpacing, spacing, "spacing"), parse_enum(End, end, "end")
    if spacing is TimeSpacing.AUTO or end is End.AUTO:
        raise OptionError("spacing", "resolve auto with solver_conventions first")
    if nfe < 1:
        raise OptionError("nfe", f"must be a positive number of network calls, got {nfe}")
    schedule = NoiseSchedule(diffusion, clip_lambda if sampler in DPM_SOLVER_FAMILY else None)
    clean = end is End.CLEAN
    if sampler in (Sampler.DPM_SOLVER_2, Sampler.DPM_SOLVER_3):
        orders = singlestep_orders(nfe - clean, 2 if sampler is Sampler.DPM_SOLVER_2 else 3) + [1] * clean
        return singlestep_grid(schedule, orders, spacing, end), orders
    calls = calls_spent(sampler, nfe, end)
    moves_to_grid_steps = calls // 2 if sampler is Sampler.HEUN else calls - clean  # the clean move: one call
    if moves_to_grid_steps < 1 and not clean:
        raise OptionError("nfe", f"{sampler} needs at least 2 network calls to end at step 0, got {nfe}")
    return time_grid(schedule, moves_to_grid_steps + 1, spacing, end), []


def ode_sample(
    diffusion: GaussianDiffusion,
    model: Model,
    x_T: torch.Tensor,
    sampler: str | Sampler,
    nfe: int,
    *,
    spacing: str | TimeSpacing = TimeSpacing.AUTO,
    end: str | End = End.AUTO,
    clip_denoised: bool = False,
) -> tuple[torch.Tensor, int]:
    """x_T carried to x_0 by one of ``ODE_SOLVERS`` in at most ``nfe`` network calls; returns (x, calls). ``auto``
    spacing and end are the method's authors' (``solver_conventions``, by the images' size)."""
    sampler = parse_enum(Sampler, sampler, "sampler")
    if sampler not in ODE_SOLVERS:
        raise OptionError("sampler", f"{sampler} is not an ODE solver: one of {', '.join(ODE_SOLVERS)}")
    spacing, end = solver_conventions(sampler, spacing, end, x_T.shape[-1])
    grid, orders = solver_grid(diffusion, sampler, nfe, spacing, end)
    clip = clip_denoised
    with torch.no_grad():
        if sampler in (Sampler.DPM_SOLVER_PP_2M, Sampler.DPM_SOLVER_PP_3M):
            order = 2 if sampler is Sampler.DPM_SOLVER_PP_2M else 3
            return dpm_solver_multistep(diffusion, model, x_T, grid, order=order, clip_denoised=clip)
        if sampler in (Sampler.DPM_SOLVER_2, Sampler.DPM_SOLVER_3):
            return dpm_solver_singlestep(diffusion, model, x_T, grid, orders, clip_denoised=clip)
        if sampler in UNIPC:
            order, variant = UNIPC[sampler]
            return unipc(diffusion, model, x_T, grid, order=order, variant=variant, clip_denoised=clip)
        return heun(diffusion, model, x_T, grid, clip_denoised=clip)
