"""Make ``authors_samplers.npz``: the authors' own sampling code run on the synthetic ε-network of
``helpers.authors_network``, the project's β schedules and numpy's legacy draws (README.md beside this file).

The authors' repositories are not part of the project: fetch each at the commit the README names and pass its
folder. Their modules are loaded from those folders as they are; nothing of them is copied here.

    python tests/core/golden/make_authors_samplers.py --dpm-solver ../dpm-solver --unipc ../UniPC \\
        --edm ../edm --pytorch-diffusion ../pytorch_diffusion [--out FILE] [--check]

``--check`` compares the arrays made now with the committed file instead of writing it: float64 arrays to 1e-12,
the float32 ancestral chains to 1e-5 (another PyTorch build's float32 kernels move them by a few 1e-7).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for helpers

from helpers.authors_network import SCHEDULES, X_T_SHAPE, normal, synthetic_eps  # noqa: E402

from ddpm.core.schedules import get_beta_schedule  # noqa: E402

PP2M_NFE = (8, 10, 12, 13, 20)
SINGLESTEP_NFE = (10, 11, 12)
MULTISTEP_NFE = (*range(5, 21), 25, 50)  # DPM-Solver++(3M) and UniPC
EDM_NUM_STEPS = (5, 6, 10, 70, 100)  # NFE 9, 11, 19, 139, 199 (from 69 levels on, T = 1000 repeats steps)
SKIPS = ("logSNR", "time_uniform", "time_quadratic")


def load_module(path: Path, name: str):
    """A module of an authors' repository, loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: cannot load it")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_functions(path: Path, names: tuple[str, ...], namespace: dict) -> dict:
    """The top-level functions ``names`` of a file, without running its imports (EDM's generate.py needs click,
    dnnlib and PIL; pytorch_diffusion's package downloads checkpoints)."""
    tree = ast.parse(path.read_text())
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    if len(wanted) != len(names):
        raise SystemExit(f"{path}: expected functions {names}")
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return namespace


def discrete_network(eps: Callable, total_n: int) -> Callable:
    """The synthetic network as DPM-Solver's and UniPC's ``model_wrapper`` call it: their time input
    (t − 1/N′)·1000 read back as the step index t·N′ − 1."""
    return lambda x, t_input: eps(x, t_input * total_n / 1000.0)


def dpm_solver_arrays(repo: Path) -> dict[str, np.ndarray]:
    dpm = load_module(repo / "dpm_solver_pytorch.py", "dpm_solver_pytorch")
    out = {}
    for key, (name, T) in SCHEDULES.items():
        ns = dpm.NoiseScheduleVP("discrete", betas=torch.from_numpy(get_beta_schedule(name, T)), dtype=torch.float64)
        out[f"{key}_kept_steps"] = np.array(ns.total_N)
        model = dpm.model_wrapper(discrete_network(synthetic_eps(name, T), ns.total_N), ns, model_type="noise")

        def run(algorithm: str, model=model, ns=ns, **options) -> np.ndarray:
            solver = dpm.DPM_Solver(model, ns, algorithm_type=algorithm)
            return solver.sample(normal(0, X_T_SHAPE), lower_order_final=True, **options).numpy()

        for skip in SKIPS[:2]:
            for nfe in PP2M_NFE:
                out[f"{key}_pp2m_{skip}_{nfe}"] = run(
                    "dpmsolver++", steps=nfe, order=2, skip_type=skip, method="multistep"
                )
        for skip in SKIPS:
            for order in (2, 3):
                for nfe in SINGLESTEP_NFE:
                    out[f"{key}_single{order}_{skip}_{nfe}"] = run(
                        "dpmsolver", steps=nfe, order=order, skip_type=skip, method="singlestep"
                    )
        for skip in SKIPS[:2]:
            for nfe in MULTISTEP_NFE:
                out[f"{key}_pp3m_{skip}_{nfe}"] = run(
                    "dpmsolver++", steps=nfe, order=3, skip_type=skip, method="multistep"
                )
    return out


def unipc_arrays(repo: Path) -> dict[str, np.ndarray]:
    uni = load_module(repo / "uni_pc.py", "uni_pc")
    out = {}
    for key, (name, T) in SCHEDULES.items():
        ns = uni.NoiseScheduleVP("discrete", betas=torch.from_numpy(get_beta_schedule(name, T)), dtype=torch.float64)
        model = uni.model_wrapper(discrete_network(synthetic_eps(name, T), ns.total_N), ns, model_type="noise")
        for variant in ("bh1", "bh2"):
            solver = uni.UniPC(model, ns, algorithm_type="data_prediction", variant=variant)
            for order in (2, 3):
                for skip in SKIPS[:2]:
                    for nfe in MULTISTEP_NFE:
                        with contextlib.redirect_stdout(io.StringIO()):  # it prints every update
                            x = solver.sample(
                                normal(0, X_T_SHAPE),
                                steps=nfe,
                                order=order,
                                skip_type=skip,
                                method="multistep",
                                lower_order_final=True,
                            )
                        out[f"{key}_unipc_{variant}_{order}_{skip}_{nfe}"] = x.numpy()
    return out


class _DiscreteEDMNetwork:
    """A discrete-time ε-network as EDM's ``edm_sampler`` calls a denoiser: at the network's own noise levels
    σ̃_τ = √((1 − ᾱ_τ)/ᾱ_τ) (``round_sigma``: the nearest), D(x̃; σ̃) = x̃ − σ̃ ε(x̃/√(1 + σ̃²), τ)."""

    def __init__(self, name: str, T: int):
        alphas_cumprod = np.cumprod(1.0 - get_beta_schedule(name, T))
        self.levels = torch.from_numpy(np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod))
        self.sigma_min, self.sigma_max = float(self.levels[0]), float(self.levels[-1])
        self.eps = synthetic_eps(name, T)

    def _index(self, sigma: torch.Tensor) -> torch.Tensor:
        return (sigma.reshape(-1, 1) - self.levels.reshape(1, -1)).abs().argmin(dim=1)

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.levels[self._index(torch.as_tensor(sigma, dtype=torch.float64))].reshape(
            torch.as_tensor(sigma).shape
        )

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, class_labels=None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        tau = self._index(sigma).double().expand(x.shape[0])
        return x - sigma * self.eps(x / (1.0 + sigma**2).sqrt(), tau)


def edm_arrays(repo: Path) -> dict[str, np.ndarray]:
    edm = load_functions(repo / "generate.py", ("edm_sampler",), {"torch": torch, "np": np})
    out = {}
    for key, (name, T) in SCHEDULES.items():
        net = _DiscreteEDMNetwork(name, T)
        for num_steps in EDM_NUM_STEPS:
            x = edm["edm_sampler"](net, normal(0, X_T_SHAPE), num_steps=num_steps)
            out[f"{key}_heun_{2 * num_steps - 1}"] = x.numpy()
    return out


def ddpm_ancestral_arrays(repo: Path) -> dict[str, np.ndarray]:
    """DDPM's ancestral chain as pesser/pytorch_diffusion ports it (float32), its noise drawn in advance:
    step i takes ``RandomState(1)``'s i-th draw (its ``torch.randn_like`` replaced by that draw)."""
    source = (repo / "pytorch_diffusion" / "diffusion.py").read_text()
    namespace: dict = {}
    kept = "\n".join(line for line in source.splitlines() if not line.startswith("from pytorch_diffusion"))
    exec(compile(kept, "pytorch_diffusion/diffusion.py", "exec"), namespace)  # noqa: S102
    eps = synthetic_eps("linear", 1000)
    noise = normal(1, (1000, *X_T_SHAPE)).float()
    out = {}
    for variance in ("fixedsmall", "fixedlarge"):
        diffusion = object.__new__(namespace["Diffusion"])
        diffusion.init_diffusion_parameters(
            beta_schedule="linear",
            beta_start=0.0001,
            beta_end=0.02,
            num_diffusion_timesteps=1000,
            model_var_type=variance,
        )
        x = normal(0, X_T_SHAPE).float()
        real_randn_like = torch.randn_like
        try:
            for i in reversed(range(1000)):
                torch.randn_like = lambda _x, _i=i: noise[_i].clone()
                x = namespace["denoising_step"](
                    x,
                    torch.full((X_T_SHAPE[0],), i, dtype=torch.long),
                    model=lambda x, t: eps(x.double(), t).float(),
                    logvar=diffusion.logvar,
                    sqrt_recip_alphas_cumprod=diffusion.sqrt_recip_alphas_cumprod,
                    sqrt_recipm1_alphas_cumprod=diffusion.sqrt_recipm1_alphas_cumprod,
                    posterior_mean_coef1=diffusion.posterior_mean_coef1,
                    posterior_mean_coef2=diffusion.posterior_mean_coef2,
                )
        finally:
            torch.randn_like = real_randn_like
        out[f"ddpm_ancestral_{variance}"] = x.numpy()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag in ("--dpm-solver", "--unipc", "--edm", "--pytorch-diffusion"):
        parser.add_argument(flag, type=Path, required=True, help="the repository's folder")
    parser.add_argument("--out", type=Path, default=HERE / "authors_samplers.npz")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)  # the authors' grids in float64 (their linspace follows the default)
    arrays = (
        dpm_solver_arrays(args.dpm_solver)
        | unipc_arrays(args.unipc)
        | edm_arrays(args.edm)
        | ddpm_ancestral_arrays(args.pytorch_diffusion)
    )
    if args.check:
        stored = np.load(args.out)
        missing = sorted(set(stored.files) - set(arrays))
        bad = False
        for dtype, tolerance in ((np.float64, 1e-12), (np.float32, 1e-5)):
            keys = [k for k in stored.files if k in arrays and stored[k].dtype == dtype]
            worst = max(((float(np.abs(arrays[k] - stored[k]).max()), k) for k in keys), default=(0.0, "none"))
            print(f"{dtype.__name__}: {len(keys)} arrays, largest difference {worst[0]:.3g} ({worst[1]})")
            bad |= worst[0] > tolerance
        print(f"{len(stored.files)} stored arrays, {len(arrays)} made; missing here: {missing or 'none'}")
        return 0 if not missing and not bad else 1
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, **dict(sorted(arrays.items())))
    tmp.replace(args.out)
    print(f"{args.out}: {len(arrays)} arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
