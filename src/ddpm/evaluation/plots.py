"""Figures drawn with matplotlib (off-screen), returned as uint8 H×W×3 arrays, and image grids captioned with a
title and row labels."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CAPTION_FONT = 13  # px


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
    for ax, (x, y, xl, yl) in zip(
        axes,
        [
            (done, dist, steps_label, "distortion (RMSE, [0, 255])"),
            (done, rate, steps_label, "rate (bits/dim)"),
            (rate, dist, "rate (bits/dim)", "distortion (RMSE, [0, 255])"),
        ],
        strict=True,
    ):
        ax.plot(x, y)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    fig.suptitle("Rate–distortion along the reverse process (DDPM Fig. 5), test images")
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
    ax.set_title("FID against network calls, one line per sampler")
    ax.grid(alpha=0.3)
    ax.legend(title="sampler")
    return _pixels(fig)


def _caption_font():
    """matplotlib's DejaVu Sans (it has the papers' symbols: x̂, η, λ, →), the same file everywhere."""
    from pathlib import Path

    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), CAPTION_FONT)


def _wrap(text: str, font, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def captioned(image: np.ndarray, title: str, row_labels: Sequence[str] = (), footer: str = "") -> np.ndarray:
    """An image grid (H×W×C uint8, C = 1 or 3) as a figure that says what it shows: ``title`` above (wrapped), a
    label left of each of its ``len(row_labels)`` equal rows, and ``footer`` below."""
    font = _caption_font()
    pad, line = 6, CAPTION_FONT + 5
    grid = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB")
    label_width = int(max((font.getlength(label) for label in row_labels), default=-pad)) + 2 * pad
    width = max(label_width + grid.width + pad, 360)
    title_lines = _wrap(title, font, width - 2 * pad)
    footer_lines = _wrap(footer, font, width - 2 * pad) if footer else []
    top = pad + line * len(title_lines) + pad
    height = top + grid.height + pad + line * len(footer_lines) + (pad if footer_lines else 0)
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(grid, (label_width, top))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(title_lines):
        draw.text((pad, pad + i * line), text, fill="black", font=font)
    for r, label in enumerate(row_labels):
        centre = top + (r + 0.5) * grid.height / len(row_labels)
        draw.text((label_width - pad, centre), label, fill="black", font=font, anchor="rm")
    for i, text in enumerate(footer_lines):
        draw.text((pad, top + grid.height + pad + i * line), text, fill="black", font=font)
    return np.asarray(canvas)
