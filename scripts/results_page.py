"""Fill a manual page's generated blocks from a finished pipeline run, so that the page's numbers, tables and
pictures are the pipeline's own and never typed by hand (docs/cifar10-cpu.md is made this way).

Usage: python scripts/results_page.py RUN PAGE --experiment NAME
  RUN         a workspace where `dvc exp run` finished (its metrics/, reports/, outputs/ and mlflow.db)
  PAGE        a Markdown page holding blocks <!-- run:NAME --> … <!-- /run:NAME -->, NAME one of
                stages   each stage's wall time (its MLflow run, start to end) and the DAG's
                results  the report's results table (reports/results.md)
                tables   the sampler tables: DDIM Table 1 (FID, KID), FID and KID against NFE, DDIM Table 2
              and pictures copied to images/<page name>/ beside it: samples.png, fid_vs_nfe.png,
              rate_distortion.png
  --experiment  the DVC experiment (its name in `dvc exp show`) whose newest pipeline run in MLflow times the
              stages
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

PICTURES = {  # file in the run → name beside the page
    "outputs/samples.png": "samples.png",
    "reports/fid_vs_nfe.png": "fid_vs_nfe.png",
    "outputs/figures/rate_distortion.png": "rate_distortion.png",
}
TABLES = (  # sections of reports/paper_tables.md, by the start of their heading
    "DDIM Table 1: FID",
    "DDIM Table 1: KID",
    "FID against network calls",
    "KID × 10³ ± std against NFE",
    "DDIM Table 2",
)
BLOCK = re.compile(r"(<!-- run:(\w+) -->\n)(.*?)(<!-- /run:\2 -->)", re.S)


def sections(markdown: str) -> dict[str, str]:
    """A Markdown file's ``## `` sections by heading (the heading line left out)."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.M)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts), 2)}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def stages_block(durations: list[tuple[str, float]]) -> str:
    """A row per stage (a matrix's cells summed, with their count) and the DAG's total."""
    rows: dict[str, list[float]] = {}
    for stage, seconds in durations:
        rows.setdefault(stage.split("@")[0], []).append(seconds)
    lines = ["| stage | wall time | runs |", "|---|---|---|"]
    lines += [f"| {name} | {_minutes(sum(times))} | {len(times)} |" for name, times in rows.items()]
    total = sum(seconds for _, seconds in durations)
    lines.append(f"| **all stages** | **{_minutes(total)}** | {len(durations)} |")
    return "\n".join(lines) + "\n"


def tables_block(paper_tables: str) -> str:
    found = sections(paper_tables)
    out = []
    for start in TABLES:
        heading = next((h for h in found if h.startswith(start)), None)
        if heading is not None:
            body = re.sub(r"^!\[[^\]]*\]\([^)]*\)\n?", "", found[heading], flags=re.M).strip()  # pictures: below
            out.append(f"#### {heading}\n\n{body}\n")
    return "\n".join(out)


def fill(page: str, blocks: dict[str, str]) -> str:
    unknown = sorted({m.group(2) for m in BLOCK.finditer(page)} - set(blocks))
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)}: no such block; known: {', '.join(blocks)}")
    return BLOCK.sub(lambda m: m.group(1) + blocks[m.group(2)].rstrip("\n") + "\n" + m.group(4), page)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("page", type=Path)
    ap.add_argument("--experiment", required=True, help="the DVC experiment whose stages are timed")
    args = ap.parse_args()
    run = args.run.resolve()
    for need in ("params.yaml", "reports/results.md", "reports/paper_tables.md", "mlflow.db"):
        if not (run / need).is_file():
            sys.exit(f"error: {run / need} not found: RUN must be a workspace where the pipeline finished")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{run / 'mlflow.db'}"
    from ddpm.tracking.queries import stage_durations

    params = yaml.safe_load((run / "params.yaml").read_text())
    try:
        durations = stage_durations(params["dataset"], args.experiment)
    except ValueError as err:
        sys.exit(f"error: --experiment: {err}")
    results = sections((run / "reports" / "results.md").read_text().replace("# Results\n", "## Results\n", 1))
    blocks = {
        "stages": stages_block(durations),
        "results": results["Results"] + "\n",
        "tables": tables_block((run / "reports" / "paper_tables.md").read_text()),
    }
    page = args.page.read_text()
    images = args.page.parent / "images" / args.page.stem
    images.mkdir(parents=True, exist_ok=True)
    for source, name in PICTURES.items():
        if (run / source).is_file():
            shutil.copyfile(run / source, images / name)
    tmp = args.page.with_name(args.page.name + ".tmp")
    tmp.write_text(fill(page, blocks))
    os.replace(tmp, args.page)
    print(f"{args.page}: {', '.join(sorted(blocks))} filled; pictures in {images}")


if __name__ == "__main__":
    main()
