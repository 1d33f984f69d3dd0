"""dvc.yaml's code deps, generated: each stage depends on the project files its script imports, directly or not
(read from the source, no code runs), that can change its outputs, so a change to a module reruns the stages whose
outputs it can change and no other. Left out: MLflow logging (``ddpm.tracking``, which the layering test keeps
apart from the math) except for the stages whose outputs are computed from MLflow (``FROM_MLFLOW``), and packages'
``__init__.py`` files that hold only a docstring.

    python scripts/dvc_deps.py           # rewrite the code deps in dvc.yaml
    python scripts/dvc_deps.py --check   # exit 1 if dvc.yaml differs from what would be written

Only the deps that are project code (pipeline/*.py, src/ddpm/...) are rewritten, after each stage's data deps
(shards, models, metrics) under a marker comment; everything else in dvc.yaml stays as written.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DVC_YAML = ROOT / "dvc.yaml"
CODE = re.compile(r"^      - (pipeline|src/ddpm)/\S*\n|^      # code: .*\n", re.MULTILINE)
MARKER = "      # code: what can change this stage's outputs (scripts/dvc_deps.py)\n"
TRACKING = SRC / "ddpm" / "tracking"
FROM_MLFLOW = {"report"}  # stages whose outputs are computed from MLflow's runs (the papers' tables, best_fid)


def module_name(path: Path) -> str:
    """``src/ddpm/core/unet.py`` → ``ddpm.core.unet``; a package's ``__init__.py`` → the package."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    """The file of project module ``name``, or None for anything outside the project."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def imports(path: Path) -> frozenset[str]:
    """Every module name ``path`` imports (at any depth of the file, lazily or not), relative ones resolved."""
    tree = ast.parse(path.read_text())
    package = (
        module_name(path)
        if path.name == "__init__.py"
        else module_name(path).rpartition(".")[0]
        if path.is_relative_to(SRC)
        else ""
    )
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{a.name}" for a in node.names)  # `from pkg import module`
    return frozenset(found)


def project_imports(path: Path) -> set[Path]:
    """The project files ``path`` imports directly, with the ``__init__.py`` of every package on the way."""
    files = set()
    for name in imports(path):
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            found = module_path(".".join(parts[:i]))
            if found is not None:
                files.add(found)
    files.discard(path)
    return files


def closure(path: Path, follow=lambda p: True) -> set[Path]:
    """Every project file that importing ``path`` can import, ``path`` included; files ``follow`` rejects are
    neither included nor looked into."""
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current not in seen and follow(current):
            seen.add(current)
            todo.extend(project_imports(current))
    return seen


@cache
def docstring_only(path: Path) -> bool:
    """The file holds a docstring and nothing else (importing it runs no code)."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def output_closure(script: Path) -> set[Path]:
    """The files of ``closure(script)`` that can change the stage's outputs: no ``ddpm.tracking`` module (unless
    the stage is in ``FROM_MLFLOW``) nor what only they import, no docstring-only ``__init__.py``."""
    mlflow = script.stem in FROM_MLFLOW
    files = closure(script, lambda p: mlflow or not p.is_relative_to(TRACKING))
    return {p for p in files if not (p.name == "__init__.py" and docstring_only(p))}


def library_files() -> list[Path]:
    return sorted((SRC / "ddpm").rglob("*.py"))


def code_deps(script: Path) -> list[str]:
    """The stage script first, then the library files that can change its outputs, as dvc.yaml lists them."""
    files = sorted(str(p.relative_to(ROOT)) for p in output_closure(script) if p != script)
    return [str(script.relative_to(ROOT)), *files]


def generated(text: str) -> str:
    """``text`` (dvc.yaml) with each stage's code deps replaced by ``code_deps`` of its script, after its data
    deps under ``MARKER``."""
    out, pos = [], 0
    for match in re.finditer(
        r"^    cmd: .*?(pipeline/\w+\.py).*\n    deps:\n((?:      - .*\n|      # .*\n|        .*\n)*)",
        text,
        re.MULTILINE,
    ):
        deps_start = match.start(2)
        rest = CODE.sub("", match.group(2))
        listed = "".join(f"      - {dep}\n" for dep in code_deps(ROOT / match.group(1)))
        out.append(text[pos:deps_start] + rest + MARKER + listed)
        pos = match.end()
    return "".join(out) + text[pos:]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is not what would be written")
    args = parser.parse_args(argv)
    text = DVC_YAML.read_text()
    new = generated(text)
    if args.check:
        if new != text:
            print(
                "dvc.yaml: the code deps differ from the stage scripts' imports; run `python scripts/dvc_deps.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != text:
        DVC_YAML.write_text(new)
        print("dvc.yaml: code deps rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
