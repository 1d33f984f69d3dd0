"""The front page and the manual: the README stays short, the MkDocs site builds strictly (every page in the nav,
no broken link or image), and no user-facing file speaks of how the project was built."""

import re
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ROOT

USER_FACING = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
USER_FACING += [ROOT / "benchmarks" / "RESULTS.md", *sorted((ROOT / "benchmarks" / "results").glob("*.md"))]


def test_the_readme_is_a_front_page_whose_links_lead_into_the_manual():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[^)#]+)\)", text)
    assert links and all((ROOT / link).is_file() for link in links), links


def _nav_pages(entries) -> set[str]:
    return {p for e in entries for v in e.values() for p in (_nav_pages(v) if isinstance(v, list) else {v})}


def test_the_manual_builds_strictly_with_every_page_in_its_nav(tmp_path):
    """Every page in the nav: those of docs/ and those the hooks make (Get started from the README, a page per
    ddpm command from its parser); each page has sections for the sidebar."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from mkdocs_hooks import pages

    from ddpm.cli.main import MODULES

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    generated = pages()
    assert {f"commands/{name}.md" for name in MODULES} | {"get-started.md"} == set(generated)
    assert _nav_pages(config["nav"]) == {p.name for p in (ROOT / "docs").glob("*.md")} | set(generated)
    for page in [*(ROOT / "docs").glob("*.md")]:
        if page.name != "index.md":
            assert len(re.findall(r"(?m)^## ", page.read_text())) >= 2, f"{page.name}: fewer than two sections"
    assert (
        "\n## Usage\n" in generated["commands/compare.md"] and "usage: ddpm compare" in generated["commands/compare.md"]
    )
    mkdocs = Path(sys.executable).parent / "mkdocs"
    out = subprocess.run(
        [str(mkdocs), "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    # offline, the site is whole: no page loads a script, stylesheet or font from another host
    for page in (tmp_path / "site").rglob("*.html"):
        external = re.findall(r"<(?:script|link)\b[^>]*(?:src|href)=\"(?:https?:)?//[^\"]+\"", page.read_text())
        assert not external, (page.name, external)
    assert (tmp_path / "site" / "assets" / "highlight" / "highlight.min.js").is_file()


def test_no_user_facing_file_tells_the_history_of_its_making():
    for path in USER_FACING:
        text = path.read_text()
        for pattern in (r"\bissues? \d+", r"\bthis machine\b", r"\bbefore .{0,20}tuning\b"):
            assert not re.search(pattern, text, re.IGNORECASE), (path.relative_to(ROOT), pattern)
