"""Shared by the benchmark scripts: where results go."""

from pathlib import Path

RESULTS = Path(__file__).resolve().with_name("results")


def write_results(filename: str, lines: list[str]) -> None:
    """Write a results table to benchmarks/results/<filename> and print it."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / filename).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
