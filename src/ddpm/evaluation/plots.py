"""Figures drawn with matplotlib (off-screen), returned as uint8 H×W×3 arrays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pixels(fig) -> np.ndarray:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    return np.asarray(Image.open(buf).convert("RGB"))


def rate_distortion_figure(rows: list[dict]) -> np.ndarray:
    """DDPM Fig. 5: distortion (RMSE on [0, 255]) against rate (bits/dim), and both against the step t."""
    plt = _pyplot()

    T = rows[0]["t"]  # the rows run t = T … 0
    done = [T - r["t"] for r in rows]  # reverse steps taken: 0 at x_T, T at x_0 (DDPM Fig. 5's x axis)
    rate = [r["rate_bpd"] for r in rows]
    dist = [r["distortion_rmse"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=100)
    steps_label = f"reverse process steps taken (T − t, T = {T})"
    for ax, (x, y, xl, yl) in zip(axes, [(done, dist, steps_label, "distortion (RMSE, [0, 255])"),
                                         (done, rate, steps_label, "rate (bits/dim)"),
                                         (rate, dist, "rate (bits/dim)", "distortion (RMSE, [0, 255])")], strict=True):
        ax.plot(x, y)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    return _pixels(fig)


def fid_vs_nfe_figure(rows: list[dict]) -> np.ndarray:
    """FID against network calls per image (log scale), one line per sampler; ``rows`` hold sampler, nfe, fid."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=100)
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        points = sorted((r["nfe"], r["fid"]) for r in rows if r["sampler"] == sampler)
        ax.plot(*zip(*points, strict=True), marker="o", label=sampler)
    ax.set_xscale("log")
    nfes = sorted({r["nfe"] for r in rows})
    ax.set_xticks(nfes, [str(n) for n in nfes])
    ax.minorticks_off()
    ax.set_xlabel("network function evaluations per image (NFE)")
    ax.set_ylabel("FID (vs train)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _pixels(fig)
