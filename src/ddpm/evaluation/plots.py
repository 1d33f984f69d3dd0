"""Figures drawn with matplotlib (off-screen), returned as uint8 H×W×3 arrays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def rate_distortion_figure(rows: list[dict]) -> np.ndarray:
    """DDPM Fig. 5: distortion (RMSE on [0, 255]) against rate (bits/dim), and both against the step t."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    rate = [r["rate_bpd"] for r in rows]
    dist = [r["distortion_rmse"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=100)
    for ax, (x, y, xl, yl) in zip(axes, [(t, dist, "reverse process steps (T − t)", "distortion (RMSE)"),
                                         (t, rate, "reverse process steps (T − t)", "rate (bits/dim)"),
                                         (rate, dist, "rate (bits/dim)", "distortion (RMSE)")], strict=True):
        ax.plot(x, y)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.invert_xaxis()  # t runs from T down to 0, as the reverse process does
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return np.asarray(Image.open(buf).convert("RGB"))
