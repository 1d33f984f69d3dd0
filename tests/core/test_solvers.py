"""The ODE solvers: DDIM as their first-order member, convergence to the exact probability-flow ODE solution of
Gaussian data at the methods' orders, agreement with diffusers' schedulers where the algorithms coincide, and the
number of network calls a budget buys."""

import numpy as np
import pytest
import torch

from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.flow import Grid, NoiseSchedule, time_grid
from ddpm.core.gaussian import MU, S
from ddpm.core.options import End, OptionError, Sampler, TimeSpacing, solver_conventions
from ddpm.core.respace import SpacedDiffusion
from ddpm.core.sampling import ddim_sample, ddim_timesteps
from ddpm.core.schedules import get_beta_schedule
from ddpm.core.solvers import (
    ODE_SOLVERS,
    dpm_solver_multistep,
    dpm_solver_singlestep,
    grid_calls,
    heun,
    ode_sample,
    singlestep_grid,
    singlestep_orders,
    solver_grid,
    unipc,
)

SHAPE = (16, 1, 2, 2)


def continuous_gaussian_eps(schedule: NoiseSchedule, mu=MU, s=S):
    """The optimal ε of Gaussian data N(mu, s²) at any continuous step τ: σ (x − α mu) / (α² s² + σ²)."""

    def model(x, t):
        alpha, sigma = (
            torch.as_tensor(v, dtype=x.dtype).view(-1, 1, 1, 1) for v in schedule.alpha_sigma(t.double().cpu().numpy())
        )
        return sigma * (x - alpha * mu) / (alpha**2 * s * s + sigma**2)

    return model


def exact_flow(schedule: NoiseSchedule, x_T: torch.Tensor, tau: float, mu=MU, s=S) -> torch.Tensor:
    """The probability-flow ODE of Gaussian data keeps z = (x − α mu) / √(α² s² + σ²): x_T carried to step τ."""
    (a_T, s_T), (a, sd) = schedule.alpha_sigma(schedule.num_timesteps - 1.0), schedule.alpha_sigma(tau)
    z = (x_T - a_T * mu) / np.sqrt(a_T**2 * s * s + s_T**2)
    return a * mu + np.sqrt(a**2 * s * s + sd**2) * z


@pytest.fixture
def x_T():
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_continuous_schedule_agrees_with_the_discrete_one_at_integer_steps(linear100):
    schedule = NoiseSchedule(linear100)
    alpha, sigma = schedule.alpha_sigma(np.arange(100.0))
    np.testing.assert_allclose(alpha, linear100.sqrt_alphas_cumprod, rtol=1e-14)
    np.testing.assert_allclose(sigma, linear100.sqrt_one_minus_alphas_cumprod, rtol=1e-12)
    taus = np.array([0.0, 0.25, 17.5, 63.0, 98.9, 99.0])
    np.testing.assert_allclose(schedule.inverse_lambda(schedule.lam(taus)), taus, atol=1e-9)
    assert (np.diff(schedule.lam(np.linspace(0, 99, 500))) < 0).all()  # λ falls as τ grows


def test_grids_follow_the_authors_spacings(linear100):
    schedule = NoiseSchedule(linear100)
    uniform = time_grid(schedule, 5, "time_uniform").steps
    np.testing.assert_allclose(uniform, [99.0, 74.25, 49.5, 24.75, 0.0])  # t = (τ + 1)/T uniform from 1 to 1/T
    lam = schedule.lam(time_grid(schedule, 6, "logsnr").steps)
    np.testing.assert_allclose(np.diff(lam), np.full(5, (lam[-1] - lam[0]) / 5), rtol=1e-9)
    quad = time_grid(schedule, 4, TimeSpacing.TIME_QUADRATIC).steps
    np.testing.assert_allclose(np.sqrt((quad + 1) / 100), np.linspace(1.0, 0.1, 4))
    with pytest.raises(OptionError, match="spacing: unknown value 'cubic'"):
        time_grid(schedule, 5, "cubic")
    with pytest.raises(OptionError, match="steps must be strictly decreasing"):
        Grid(np.array([3.0, 5.0]))
    with pytest.raises(OptionError, match="the ODE solvers take the original process"):
        NoiseSchedule(SpacedDiffusion(linear100, [0, 50]))


@pytest.mark.parametrize("skip", ["uniform", "quad"])
def test_dpm_solver_1_is_ddim(linear100, x_T, skip):
    """DPM-Solver-1 on DDIM's steps, ending clean, is DDIM (η = 0) to float64 precision (DPM-Solver §4.1)."""
    model = continuous_gaussian_eps(NoiseSchedule(linear100))
    steps = sorted(set(ddim_timesteps(100, 10, skip)), reverse=True)
    ours, calls = dpm_solver_multistep(linear100, model, x_T, Grid(np.array(steps, float), End.CLEAN), order=1)
    ddim = ddim_sample(linear100, model, x_T.shape, 10, skip=skip, noise=x_T, dtype=torch.float64, clip_denoised=False)
    torch.testing.assert_close(ours, ddim, rtol=1e-10, atol=1e-10)
    assert calls == len(steps)


def convergence_slopes(run, diffusion, x_T, budgets):
    """log2 of the error ratio between successive budgets (each doubling the last): the empirical order."""
    schedule = NoiseSchedule(diffusion)
    model = continuous_gaussian_eps(schedule)
    exact = exact_flow(schedule, x_T, 0.0)
    errors = []
    for nfe in budgets:
        x, calls = run(diffusion, schedule, model, x_T, nfe)
        assert calls == nfe
        errors.append((x - exact).abs().max().item())
    return np.log2(np.array(errors[:-1]) / np.array(errors[1:])), errors


def _logsnr(schedule, points):
    return time_grid(schedule, points, "logsnr")


def _singlestep(order, solver_type="dpmsolver"):
    def run(diffusion, schedule, model, x_T, nfe):
        orders = [order] * (nfe // order)  # moves of the method's order only: a final lower-order move sets the rate
        return dpm_solver_singlestep(
            diffusion, model, x_T, singlestep_grid(schedule, orders, "logsnr"), orders, solver_type=solver_type
        )

    return run


# (solver, budgets, order, the last slope's tolerance); measured last slopes linear/cosine in the comments
CONVERGENCE = {
    "dpm_solver_pp_1m": (
        lambda d, s, m, x, n: dpm_solver_multistep(d, m, x, _logsnr(s, n + 1), order=1),
        [10, 20, 40, 80],
        1,
        0.15,
    ),  # 0.98 / 0.97
    "dpm_solver_pp_2m": (
        lambda d, s, m, x, n: dpm_solver_multistep(d, m, x, _logsnr(s, n + 1), order=2),
        [20, 40, 80, 160],
        2,
        0.15,
    ),  # 1.99 / 1.99
    # its first move is first order (local error O(h²), the authors' start), which bounds the global order at 2
    "dpm_solver_pp_3m": (
        lambda d, s, m, x, n: dpm_solver_multistep(d, m, x, _logsnr(s, n + 1), order=3),
        [40, 80, 160, 320],
        2,
        0.15,
    ),  # 2.02 / 2.04
    "dpm_solver_2": (_singlestep(2), [20, 40, 80, 160], 2, 0.15),  # 2.03 / 2.04
    "dpm_solver_3": (_singlestep(3), [48, 96, 192, 384], 3, 0.25),  # 3.07 / 3.13
    "dpm_solver_3_taylor": (_singlestep(3, "taylor"), [48, 96, 192, 384], 3, 0.25),  # 3.00 / 3.03
    # UniC raises the predictor's order p to p + 1; UniPC-3's first moves (orders 1, 2) keep it near 4 from below
    "unipc_2": (
        lambda d, s, m, x, n: unipc(d, m, x, _logsnr(s, n + 1), order=2, lower_order_final=False),
        [20, 40, 80, 160],
        3,
        0.15,
    ),  # 2.97 / 2.93
    "unipc_3": (
        lambda d, s, m, x, n: unipc(d, m, x, _logsnr(s, n + 1), order=3, lower_order_final=False),
        [40, 80, 160, 320],
        4,
        0.35,
    ),  # 3.82 / 3.80
    "unipc_bh1_2": (
        lambda d, s, m, x, n: unipc(d, m, x, _logsnr(s, n + 1), order=2, variant="bh1", lower_order_final=False),
        [20, 40, 80, 160],
        3,
        0.15,
    ),  # 3.04 / 3.06
    "unipc_bh1_3": (
        lambda d, s, m, x, n: unipc(d, m, x, _logsnr(s, n + 1), order=3, variant="bh1", lower_order_final=False),
        [40, 80, 160, 320],
        4,
        0.35,
    ),  # 3.91 / 3.84
    "heun": (lambda d, s, m, x, n: heun(d, m, x, _logsnr(s, n // 2 + 1)), [20, 40, 80, 160], 2, 0.15),  # 2.05 / 2.07
}


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("method", CONVERGENCE)
def test_solvers_converge_at_their_order(x_T, schedule, method):
    run, budgets, order, tolerance = CONVERGENCE[method]
    slopes, errors = convergence_slopes(run, GaussianDiffusion(get_beta_schedule(schedule, 1000)), x_T, budgets)
    # pre-asymptotic at the smallest budgets, then the method's order
    assert slopes[-1] > order - tolerance and slopes[-1] < order + 0.5, (slopes, errors)
    assert np.all(slopes > order / 2), (slopes, errors)


class SmallNet(torch.nn.Module):
    """A toy network whose output depends on x and t non-linearly (as a trained one does)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = torch.nn.Parameter(torch.randn(4, 4, generator=g) * 0.5, requires_grad=False)

    def forward(self, x, t):
        flat = x.reshape(x.shape[0], -1)
        phase = torch.as_tensor(t, dtype=flat.dtype).reshape(-1, 1) / 100.0
        return torch.tanh(flat @ self.w.to(flat.dtype) + torch.sin(3 * phase)).reshape(x.shape) * 0.5 + 0.3 * x


@pytest.mark.parametrize("steps", [[99, 90, 75, 50, 30, 10, 0], list(range(99, -1, -6))])
def test_dpm_solver_pp_2m_equals_diffusers(linear100, steps):
    """diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint, final σ = 0) on the same integer
    steps: first move first order, then 2M, the move to σ = 0 first order (x̂0) — our clean end."""
    diffusers = pytest.importorskip("diffusers")
    net = SmallNet()
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=100,
        trained_betas=linear100.betas.tolist(),
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        final_sigmas_type="zero",
        lower_order_final=True,
    )
    scheduler.set_timesteps(timesteps=steps)
    x_T = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    x = x_T.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(net(x, t.expand(3)), t, x).prev_sample
        ours, calls = dpm_solver_multistep(linear100, net, x_T.double(), Grid(np.array(steps, float), End.CLEAN))
    assert calls == len(steps)
    torch.testing.assert_close(ours.float(), x, rtol=1e-5, atol=1e-5)  # diffusers computes in float32


def _diffusers_run(scheduler, net, x_T, **set_timesteps):
    scheduler.set_timesteps(**set_timesteps)
    x = x_T.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(net(x, t.expand(x.shape[0])), t, x).prev_sample
    return x, [int(t) for t in scheduler.timesteps]


def _moves_of(order_list: list[int]) -> list[int]:
    """diffusers' per-step orders (1, 2, 3, 1, 2, …: a move restarts at each 1) as the orders of the moves."""
    moves = []
    for order in order_list:
        if order == 1:
            moves.append(1)
        else:
            moves[-1] = order
    return moves


@pytest.mark.parametrize(
    ("order", "diffusers_type", "ours"), [(2, "midpoint", "dpmsolver"), (2, "heun", "taylor"), (3, "heun", "taylor")]
)
@pytest.mark.parametrize("steps", [[99, 92, 80, 66, 50, 35, 20, 9], list(range(99, 0, -9))])
def test_dpm_solver_singlestep_equals_diffusers(linear100, steps, order, diffusers_type, ours):
    """diffusers' DPMSolverSinglestepScheduler (noise prediction) takes its intermediate steps on the grid and
    ends at σ_min = σ of step 0: ours on the same grid and orders, ending at step 0. Its order-3 "midpoint" is not
    DPM-Solver-3: there u2 is a DPM-Solver-2 move (coefficient (e^{r2 h} − 1)/2 where Algorithm 2 has
    (r2/r1)((e^{r2 h} − 1)/(r2 h) − 1)), so it is left out."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DPMSolverSinglestepScheduler(
        num_train_timesteps=100,
        trained_betas=linear100.betas.tolist(),
        algorithm_type="dpmsolver",
        solver_order=order,
        solver_type=diffusers_type,
        final_sigmas_type="sigma_min",
        lower_order_final=True,
    )
    net = SmallNet()
    x_T = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    theirs, timesteps = _diffusers_run(scheduler, net, x_T, timesteps=steps)
    orders = _moves_of(scheduler.get_order_list(len(steps)))
    with torch.no_grad():
        x, calls = dpm_solver_singlestep(
            linear100, net, x_T.double(), Grid(np.array([*timesteps, 0.0])), orders, solver_type=ours
        )
    assert calls == len(steps) and max(orders) == order
    torch.testing.assert_close(x.float(), theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("num_steps", [6, 10])
def test_unipc_equals_diffusers(linear100, order, num_steps):
    """diffusers' UniPCMultistepScheduler (bh2, data prediction, corrector on every move but the last, final σ = 0,
    lower-order final) on its own integer steps, ours on the same grid ending clean."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=100,
        trained_betas=linear100.betas.tolist(),
        solver_order=order,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="linspace",
    )
    net = SmallNet()
    x_T = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    theirs, timesteps = _diffusers_run(scheduler, net, x_T, num_inference_steps=num_steps)
    with torch.no_grad():
        x, calls = unipc(linear100, net, x_T.double(), Grid(np.array(timesteps, float), End.CLEAN), order=order)
    assert calls == num_steps
    torch.testing.assert_close(x.float(), theirs, rtol=1e-5, atol=1e-5)


def test_singlestep_orders_and_grids_follow_the_authors_code(linear100):
    assert singlestep_orders(6, 3) == [3, 2, 1] and singlestep_orders(7, 3) == [3, 3, 1]
    assert singlestep_orders(8, 3) == [3, 3, 2] and singlestep_orders(3, 3) == [2, 1]
    assert singlestep_orders(5, 2) == [2, 2, 1] and singlestep_orders(4, 1) == [1, 1, 1, 1]
    schedule = NoiseSchedule(linear100)
    # logsnr: the moves' ends uniform in λ, intermediates at λ fractions 1/3, 2/3 and 1/2
    lam = schedule.lam(singlestep_grid(schedule, [3, 2], "logsnr").steps)
    h = (lam[-1] - lam[0]) / 2
    np.testing.assert_allclose(lam - lam[0], [0, h / 3, 2 * h / 3, h, 1.5 * h, 2 * h], atol=1e-9)
    # time_uniform: the moves' ends are those of the grid with one step per call
    fine = time_grid(schedule, 7, "time_uniform").steps
    steps = singlestep_grid(schedule, [3, 2, 1], "time_uniform").steps
    np.testing.assert_allclose(steps[[0, 3, 5, 6]], fine[[0, 3, 5, 6]])
    clean = singlestep_grid(schedule, [3, 1], "logsnr", End.CLEAN)
    assert clean.end is End.CLEAN and len(clean.steps) == 4 and clean.steps[-1] == 0.0
    with pytest.raises(OptionError, match="orders: a clean end needs a last order-1 entry"):
        singlestep_grid(schedule, [3, 2], "logsnr", End.CLEAN)


@pytest.mark.parametrize("end", list(End))
@pytest.mark.parametrize("sampler", ODE_SOLVERS)
def test_a_budget_buys_exactly_its_network_calls(linear100, x_T, sampler, end):
    """Every solver spends its NFE budget exactly; Heun (two calls a move, one for a clean end's Euler move) leaves
    one call unspent when the budget has the other parity."""
    model = continuous_gaussian_eps(NoiseSchedule(linear100))
    for nfe in (4, 5, 10):
        for spacing in TimeSpacing:
            try:
                _, ends = solver_conventions(sampler, spacing, end, x_T.shape[-1])
            except OptionError:  # EDM's grid: Heun's alone, and it ends clean
                assert spacing is TimeSpacing.EDM or spacing is TimeSpacing.AUTO and end is End.STEP0
                continue
            x, calls = ode_sample(linear100, model, x_T, sampler, nfe, spacing=spacing, end=end)
            odd = nfe % 2 == 1
            expected = nfe - 1 if sampler is Sampler.HEUN and odd == (ends is End.STEP0) else nfe
            assert calls == expected and torch.isfinite(x).all(), (nfe, spacing, calls)
            resolved = solver_conventions(sampler, spacing, end, x_T.shape[-1])
            assert grid_calls(sampler, *solver_grid(linear100, sampler, nfe, *resolved)) == calls  # FID cells
    with pytest.raises(OptionError, match="nfe: must be a positive number"):
        ode_sample(linear100, model, x_T, sampler, 0)


@pytest.mark.parametrize("sampler", ["dpm_solver_3", "unipc_3", "heun"])
def test_images_drawn_by_a_solver_do_not_depend_on_the_batch(linear100, sampler):
    """``sample`` hands the solvers x_T from each image's own generator (sample.sampler and the solver_fid cells)."""
    from ddpm.core.generation import generate

    model = continuous_gaussian_eps(NoiseSchedule(linear100))
    draw = {"seed": 3, "start": 0, "count": 4, "device": "cpu", "sampler": sampler, "steps": 6}
    whole = generate(linear100, model, (1, 2, 2), batch_size=4, **draw)
    assert np.array_equal(whole, generate(linear100, model, (1, 2, 2), batch_size=3, **draw))
    with pytest.raises(OptionError, match=f"steps: {sampler} needs a budget of network calls"):
        generate(linear100, model, (1, 2, 2), batch_size=4, **(draw | {"steps": None}))


@pytest.mark.parametrize("sampler", ["dpm_solver_pp_2m", "dpm_solver_2", "dpm_solver_3", "unipc_3", "heun"])
def test_a_solver_move_copies_no_number_to_the_device(monkeypatch, sampler):
    """Coefficients enter the moves as Python floats (kernel arguments): a tensor made from a number on a GPU is a
    copy that waits for every kernel queued before it."""
    from helpers.networks import small_unet

    from ddpm.core.generation import generate

    net, diffusion = small_unet().eval(), GaussianDiffusion(get_beta_schedule("linear", 50))
    common = {"seed": 3, "start": 0, "count": 2, "batch_size": 2, "device": "cpu", "sampler": sampler, "steps": 6}
    expected = generate(diffusion, net, (1, 8, 8), **common)
    made = []
    original = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **kw: made.append(a) or original(*a, **kw))
    again = generate(diffusion, net, (1, 8, 8), **common)
    assert made == [] and (again == expected).all()
