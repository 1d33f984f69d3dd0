"""requirements.lock (scripts/lock.sh) pins every dependency pyproject.toml declares, at a version its specifier
admits, with the files' hashes: the environment the tables are made in can be made again."""

import re
import tomllib

from dvc_deps import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCKED = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", re.MULTILINE)


def pins() -> dict[str, set[str]]:
    """Each locked package's versions (a universal lock pins some twice, for different Python versions)."""
    found: dict[str, set[str]] = {}
    for name, version in LOCKED.findall((ROOT / "requirements.lock").read_text()):
        found.setdefault(canonicalize_name(name), set()).add(version)
    return found


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_every_declared_dependency_is_locked_at_a_version_it_admits():
    locked = pins()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in pyproject.toml but not in requirements.lock: run scripts/lock.sh"
        for version in locked[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"requirements.lock pins {req.name}=={version}, pyproject.toml asks {req.specifier}: "
                "run scripts/lock.sh"
            )


def test_every_locked_package_carries_its_hashes():
    text = "".join(
        line for line in (ROOT / "requirements.lock").read_text().splitlines(keepends=True) if not line.startswith("#")
    )
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    entries = [b for b in blocks if LOCKED.match(b)]
    assert len(entries) == len(LOCKED.findall(text)) > 100
    assert all("--hash=sha256:" in entry for entry in entries)
