"""Reading the project's imports from source (no code runs): which project modules each module and each stage
script imports, directly and in closure."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


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
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0] \
        if path.is_relative_to(SRC) else ""
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


def closure(path: Path) -> set[Path]:
    """Every project file that importing ``path`` can import, ``path`` included."""
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(project_imports(current))
    return seen


def library_files() -> list[Path]:
    return sorted((SRC / "ddpm").rglob("*.py"))
