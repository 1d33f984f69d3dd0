"""Shared by the benchmark scripts: where results go."""

import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().with_name("results")


def write_results(filename: str, lines: list[str]) -> None:
    """Write a results table to benchmarks/results/<filename> and print it."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / filename).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cpu_name() -> str:
    """The processor's model name and its vector extensions that matter for float32/bf16 (x86 Linux), and threads."""
    name, flags = platform.processor() or platform.machine(), set()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(simd) or 'no AVX2'}), {torch.get_num_threads()} threads"
