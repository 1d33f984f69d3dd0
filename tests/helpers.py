"""What the tests build: params from the committed defaults, the exact ε model of Gaussian data, small networks,
synthetic datasets (CIFAR-10 pickles and class folders, LSUN-style lmdb, image folders), and git repositories
holding this checkout for pipeline runs."""

import copy
import io
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ddpm.config import Params, compose, validate_params
from ddpm.core.diffusion import GaussianDiffusion
from ddpm.core.unet import UNet, UNetConfig

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- params
@cache
def _composed(overrides: tuple[str, ...]) -> dict:
    return compose(overrides, ROOT / "conf")


def compose_raw(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The params mapping ``dvc exp run -S ...`` composes from the committed conf/ (a fresh copy)."""
    return copy.deepcopy(_composed(tuple(overrides)))


def merged(base: dict, patch: dict) -> dict:
    """``base`` with ``patch`` merged in, section by section."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def make_params(patch: dict | None = None, profile: str | None = None) -> Params:
    """The default params (or a profile's) with ``patch`` merged in, validated."""
    return validate_params(merged(compose_raw([f"profile={profile}"] if profile else []), patch or {}))


# ------------------------------------------------------------------- Gaussian data and its exact model
MU, S = 0.1, 0.2  # Gaussian data x0 ~ N(MU, S² I)


def gaussian_eps_model(diffusion: GaussianDiffusion, mu=MU, s=S, exact_variance=False):
    """The optimal ε for Gaussian data: E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ).

    With ``exact_variance`` it also outputs the true log Var[x_{t−1} | x_t] = log(β̃ + coef1² Var[x0 | x_t])
    (for ``var_type="learned"``), making the reverse process exact.
    """

    def arr(name, t, x):
        return torch.from_numpy(getattr(diffusion, name)).to(x)[t].view(-1, 1, 1, 1)

    def model(x, t):
        a = arr("alphas_cumprod", t, x)
        eps = torch.sqrt(1 - a) * (x - torch.sqrt(a) * mu) / (a * s * s + 1 - a)
        if not exact_variance:
            return eps
        var_x0 = s * s * (1 - a) / (a * s * s + 1 - a)
        var = arr("posterior_variance", t, x) + arr("posterior_mean_coef1", t, x) ** 2 * var_x0
        return torch.cat([eps, torch.log(var).expand_as(x)], 1)

    return model


def discrete_gaussian_bpd(x0: torch.Tensor, mu=MU, s=S) -> float:
    """Exact NLL in bits/dim of 256-level data under the discretized N(mu, s²) (the analytic bits/dim)."""
    half = 1.0 / 255.0
    cdf = lambda v: 0.5 * (1 + torch.erf((v - mu) / (s * math.sqrt(2))))  # noqa: E731
    p = cdf(x0 + half) - cdf(x0 - half)
    return float(-torch.log(p).mean() / math.log(2))


# ------------------------------------------------------------------------------------- small networks
def small_unet(seed: int = 0, ch_mult=(1, 2), attn_resolutions=(4,), scale: float | None = 0.05, **config) -> UNet:
    """A small 8×8 grey-scale U-Net in eval mode; with ``scale``, weights drawn from N(0, scale²) (an untrained but
    non-trivial network: zero-initialised outputs would hide bugs)."""
    torch.manual_seed(seed)
    model = UNet(UNetConfig(**{"in_channels": 1, "ch": 32, "ch_mult": tuple(ch_mult),
                               "attn_resolutions": tuple(attn_resolutions), "resolution": 8, "dropout": 0.0}
                            | config))
    if scale is not None:
        for p in model.parameters():
            p.data.normal_(0, scale)
    return model.eval()


def write_shards(params: Params, out: Path) -> Path:
    """The params' dataset as shards in ``out``."""
    from ddpm.data import shards, sources

    meta = {"dataset": params.dataset.value, "source_fingerprint": sources.source_fingerprint(params)}
    shards.write_dataset({s: sources.iter_split(params, s) for s in sources.SPLITS}, out, params.data.shard_size,
                         meta)
    return out


# --------------------------------------------------------------------------------------- synthetic data


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def cifar_pickle_tarball(path: Path, per_batch: int = 4) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                     b"labels": [int(x) for x in rng.integers(0, 10, per_batch)], b"batch_label": name.encode()}
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(batch, protocol=2))
    return path


def cifar_folder_tarball(path: Path, per_class: int = 2, corrupt: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for cls in ("airplane", "cat"):
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
                    name = f"{split}/{cls}/{i:04d}.jpg"
                    _add(tar, name, b"not a jpeg" if name == corrupt else buf.getvalue())
    return path


def encoded(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def lsun_lmdb(path: Path, n: int = 12, corrupt_key: bytes | None = None) -> Path:
    """An lmdb like LSUN's exports: keys are hex ids, values encoded JPEG/WebP images of mixed, non-square sizes."""
    import lmdb

    rng = np.random.default_rng(0)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i in range(n):
            key = f"{i:040x}".encode()
            img = rng.integers(0, 256, (24 + i, 40 - i, 3), dtype=np.uint8)
            value = b"\xff\xd8 truncated" if key == corrupt_key else encoded(img, "WEBP" if i % 2 else "JPEG")
            txn.put(key, value)
    env.close()
    return path


def image_folder(root: Path, corrupt: str | None = None) -> Path:
    """cats/ and dogs/ with PNG and JPEG images of mixed sizes (some non-square)."""
    rng = np.random.default_rng(1)
    for cls in ("cats", "dogs"):
        (root / cls / "sub").mkdir(parents=True)
        for i in range(5):
            img = rng.integers(0, 256, (20 + 3 * i, 20, 3), dtype=np.uint8)
            name = root / cls / ("sub" if i == 4 else ".") / f"{i}.{'png' if i % 2 else 'jpg'}"
            name.write_bytes(b"garbage" if name.name == corrupt else encoded(img, "PNG" if i % 2 else "JPEG"))
    (root / "notes.txt").write_text("not an image")
    return root


# ----------------------------------------------------------------------------------- pipeline runs
def sh(args, cwd, env, timeout=900):
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def pipeline_env() -> dict[str, str]:
    """The environment for running dvc in a test repository: this venv first, no outer MLflow/DVC settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "DDPM_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                  "GIT_COMMITTER_EMAIL": "t@t"}


def checkout_copy(repo: Path, env: dict[str, str]) -> Path:
    """A git repository at ``repo`` holding this checkout's files (committed or not), without local outputs."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file() and not rel.startswith(("dvc.lock", "params.yaml", "metrics/", "plots/", "reports/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    # params.yaml as committed: a quickstart run in this checkout leaves its experiment's params in the workspace
    (repo / "params.yaml").write_text(committed("params.yaml"))
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "snapshot"], repo, env)
    return repo


def committed(rel: str) -> str:
    """A file of this checkout as committed (HEAD), or as it stands where this is not a git checkout."""
    res = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else (ROOT / rel).read_text()


# ------------------------------------------------------------------------------------------- sampling
SAMPLE_SHAPE = (1, 8, 8)


def sampling_setup(sampler: str = "ddim", eta: float = 0.5):
    """A small untrained network ready to sample 10 images in chunks of 4 (batches of 3) over T = 50 steps."""
    from ddpm.core.schedules import get_beta_schedule
    from ddpm.factory import Inference

    cfg = make_params({"timesteps": 50, "sample": {"num_samples": 10, "chunk_size": 4, "batch_size": 3,
                                                   "sampler": sampler, "steps": 5 if sampler == "ddim" else None,
                                                   "eta": eta}}).sample
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 50))
    return Inference(small_unet(), diffusion, SAMPLE_SHAPE, torch.device("cpu")), cfg


# ------------------------------------------------------------------- released-checkpoint layouts
IDDPM_CONVENTIONS = {"norm_eps": 1e-5, "downsample_padding": "symmetric", "time_embedding": "iddpm",
                     "qkv_layout": "heads"}


def export_layout(model, layout) -> dict:
    """The project's weights in a reference layout (the inverse of the import map; shapes as the project's, which
    the importer reshapes): small checkpoints of each layout for the tests."""
    from ddpm.importers.layouts import sources

    out, state = {}, model.state_dict()
    for ours, (keys, _) in sources(layout, model.config).items():
        if ours in state:
            parts = state[ours].chunk(len(keys)) if len(keys) > 1 else [state[ours]]
            out.update({k: p.clone() for k, p in zip(keys, parts, strict=True)})
    return out


def write_released(model, layout, folder: Path) -> Path:
    """A checkpoint of ``model`` as its authors would publish it: DDIM's training list with an EMA copy (.ckpt),
    an improved-diffusion state dict (.pt), or a diffusers folder with its config and scheduler."""
    from ddpm.importers import Layout

    state = export_layout(model, layout)
    folder.mkdir(parents=True, exist_ok=True)
    if layout is Layout.DDPM:
        path = folder / "model-790000.ckpt"
        torch.save([{k: v + 1 for k, v in state.items()}, {}, 1, 790000, state], path)
    elif layout is Layout.IDDPM:
        path = folder / "ema_0.9999_500000.pt"
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        path = folder / "ddpm-tiny"
        (path / "unet").mkdir(parents=True)
        weights = path / "unet" / "diffusion_pytorch_model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
        (path / "unet" / "config.json").write_text(json.dumps(
            {"norm_eps": model.config.norm_eps, "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1,
             "attention_head_dim": None}))
    return path


# ------------------------------------------------------------------- evaluation split over processes
def eval_images(n: int = 7, size: int = 8, seed: int = 3) -> torch.Tensor:
    """uint8 N×1×size×size test images."""
    return (torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


def sharded_evaluation(reference: Path, shard) -> dict[str, np.ndarray]:
    """The NLL (batches of 3 of 7 images), Inception features (batches of 2 of 7) and a DDIM cell (7 samples in
    chunks of 3) of a small untrained network, as ``shard`` computes them: equal for any number of processes."""
    from ddpm.evaluation.fid import inception_features
    from ddpm.evaluation.fid_cells import ddim_cell
    from ddpm.evaluation.likelihood import nll_bpd

    inference, _ = sampling_setup("ddim", 0.0)
    images = eval_images()
    nll = nll_bpd(inference.diffusion, inference.model, images.split(3), seed=5, device="cpu", shard=shard)
    features = inception_features(images.split(2), "cpu", shard)
    params = make_params({"timesteps": 50, "seed": 5, "sample": {"batch_size": 3}, "fid": {"batch_size": 2},
                          "ddim_table": {"num_samples": 7}})
    cell = ddim_cell(inference, params, 5, 0.0, reference, shard)
    return {"total_bpd": np.float64(nll["total_bpd"]), "prior_bpd": np.float64(nll["prior_bpd"]), "vb": nll["vb"],
            "xstart_mse": nll["xstart_mse"], "count": np.int64(nll["count"]), "features": features,
            "fid": np.float64(cell["fid"]), "cell_samples": np.int64(cell["num_samples"])}
