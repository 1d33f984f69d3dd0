"""MkDocs hooks (mkdocs.yml: ``hooks``): pages made at build time from their sources, so they cannot drift from
them: the Get-started page from README.md (its links into docs/ made site links), and one reference page per
``ddpm`` command from the command's own parser (``ddpm.cli``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

from ddpm.cli.main import MODULES, command_module

ROOT = Path(__file__).resolve().parent.parent
WIDTH = "100"  # the columns argparse wraps help to


def get_started() -> str:
    """README.md as a page of the site: its title, its links to docs/ made site links, and links to files outside
    the site (CONTRIBUTING.md) left as their text."""
    text = (ROOT / "README.md").read_text()
    text = re.sub(r"\A# .*\n", "# Get started\n", text)
    text = re.sub(r"\]\(docs/([^)]+)\)", r"](\1)", text)  # docs/pipeline.md → pipeline.md

    def in_site(link: re.Match) -> str:
        target = link[2].split("#")[0]
        return link[0] if target.startswith(("http:", "https:")) or (ROOT / "docs" / target).is_file() else link[1]

    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", in_site, text)


def command_page(name: str) -> str:
    """``ddpm NAME``: what it does, its usage as ``--help`` prints it, and the examples of its module."""
    module = command_module(name)
    parser = module.parser()
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        usage = parser.format_help()
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    page = f"# ddpm {name}\n\n{parser.description}\n\n## Usage\n\n```text\n{usage.rstrip()}\n```\n"
    examples = [line[4:] for line in (module.__doc__ or "").splitlines() if line.startswith("    ") and line.strip()]
    if examples:
        page += "\n## Examples\n\n```bash\n" + "\n".join(examples) + "\n```\n"
    return page


def pages() -> dict[str, str]:
    """Every generated page by its path in the site."""
    return {"get-started.md": get_started()} | {f"commands/{n}.md": command_page(n) for n in MODULES}


def on_files(files: Files, config) -> Files:
    for path, content in pages().items():
        files.append(File.generated(config, path, content=content))
    return files
