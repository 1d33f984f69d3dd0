"""The house rules, read from the source: import directions between subpackages, no cycles, MLflow in the tracking
modules, the params schema without torch, dvc.yaml's code deps what can change each stage's outputs."""

import ast
import re

import pytest
import yaml
from dvc_deps import (
    ROOT,
    SRC,
    TRACKING,
    closure,
    docstring_only,
    generated,
    imports,
    library_files,
    module_name,
    output_closure,
    project_imports,
)

# What each part of the library may import from the rest of it (its own modules aside), bottom to top.
ALLOWED = {
    "ddpm.core": set(),
    "ddpm.peers": set(),
    "ddpm.parallel": {"ddpm.peers"},
    "ddpm.progress": set(),
    "ddpm.precision": set(),
    "ddpm.config": {"ddpm.core"},
    "ddpm.device_defaults": {"ddpm.config"},
    "ddpm.storage": {"ddpm.core"},
    "ddpm.data": {"ddpm.core", "ddpm.config", "ddpm.storage", "ddpm.progress", "ddpm.parallel"},
    "ddpm.factory": {"ddpm.core", "ddpm.config", "ddpm.storage", "ddpm.precision", "ddpm.device_defaults"},
    "ddpm.sample_store": {"ddpm.core", "ddpm.config", "ddpm.storage", "ddpm.factory", "ddpm.parallel", "ddpm.progress"},
    "ddpm.importers": {"ddpm.core", "ddpm.config", "ddpm.storage", "ddpm.data", "ddpm.factory"},
    "ddpm.training": {
        "ddpm.core",
        "ddpm.config",
        "ddpm.storage",
        "ddpm.data",
        "ddpm.factory",
        "ddpm.precision",
        "ddpm.progress",
        "ddpm.device_defaults",
        "ddpm.peers",
    },
    "ddpm.evaluation": {
        "ddpm.core",
        "ddpm.config",
        "ddpm.storage",
        "ddpm.data",
        "ddpm.factory",
        "ddpm.parallel",
        "ddpm.precision",
        "ddpm.progress",
        "ddpm.processes",
    },
    "ddpm.processes": set(),
    # MLflow: logging what a stage read (data), the registered model (factory), what the report reads back
    "ddpm.tracking": {
        "ddpm.core",
        "ddpm.config",
        "ddpm.storage",
        "ddpm.data",
        "ddpm.evaluation",
        "ddpm.factory",
        "ddpm.processes",
    },
    # the stage harness on top of it all; the user commands beside it
    "ddpm.stage": {
        "ddpm.core",
        "ddpm.config",
        "ddpm.storage",
        "ddpm.data",
        "ddpm.evaluation",
        "ddpm.factory",
        "ddpm.parallel",
        "ddpm.precision",
        "ddpm.processes",
        "ddpm.tracking",
        "ddpm.device_defaults",
        "ddpm.peers",
    },
    "ddpm.cli": {
        "ddpm.core",
        "ddpm.config",
        "ddpm.storage",
        "ddpm.data",
        "ddpm.importers",
        "ddpm.evaluation",
        "ddpm.tracking",
        "ddpm.processes",
    },
}
STAGES = sorted(p.stem for p in (ROOT / "pipeline").glob("*.py"))


def part(module: str) -> str:
    """``ddpm.core.unet`` → ``ddpm.core``; ``ddpm.factory`` → itself; the package ``ddpm`` → itself."""
    return ".".join(module.split(".")[:2])


def test_every_part_of_the_library_has_its_place():
    assert {part(module_name(f)) for f in library_files()} - {"ddpm"} == set(ALLOWED)


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down_the_layers(path):
    mine = part(module_name(path))
    for target in project_imports(path):
        theirs = part(module_name(target))
        if theirs not in (mine, "ddpm"):
            assert theirs in ALLOWED.get(mine, set()), f"{module_name(path)} imports {module_name(target)}"


def test_no_import_cycles():
    graph = {f: {t for t in project_imports(f) if t.name != "__init__.py"} for f in library_files()}
    state: dict = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " → ".join(module_name(p) for p in cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_mlflow_only_in_the_tracking_package_and_nothing_imports_the_stage_scripts():
    for path in library_files() + sorted((ROOT / "pipeline").glob("*.py")):
        names = imports(path)
        if SRC / "ddpm" / "tracking" not in path.parents:
            assert not any(n == "mlflow" or n.startswith("mlflow.") for n in names), path
        assert not any(n == "pipeline" or n.startswith("pipeline.") for n in names), path


def test_the_params_schema_imports_no_torch():
    """Validation runs before any work and in stages that never touch the math; it must stay light."""
    for path in closure(SRC / "ddpm" / "config.py"):
        assert not any(n == "torch" or n.startswith("torch.") for n in imports(path)), path


def test_library_modules_are_not_named_like_stage_scripts():
    assert not {p.stem for p in library_files()} & set(STAGES)


def test_stage_scripts_are_tables_of_contents():
    for path in sorted((ROOT / "pipeline").glob("*.py")):
        assert len(path.read_text().splitlines()) <= 40, path


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_dvc_yaml_code_deps_are_what_can_change_each_stages_outputs():
    """A module a stage imports but does not list would leave its outputs stale when that module changes; one it
    lists but whose change cannot touch its outputs would rerun it for nothing: MLflow logging reruns only the
    report (its tables come from MLflow), a docstring-only __init__.py nothing. `python scripts/dvc_deps.py`
    writes them, after the data deps."""
    text = (ROOT / "dvc.yaml").read_text()
    assert generated(text) == text, "dvc.yaml's code deps are stale: run `python scripts/dvc_deps.py`"
    tracking = {str(p.relative_to(ROOT)) for p in TRACKING.glob("*.py") if not docstring_only(p)}
    for name, spec in dvc_stages().items():
        script = re.search(r"pipeline/\w+\.py", spec["cmd"]).group(0)
        deps = spec["deps"]
        code = [d for d in deps if d.startswith(("pipeline/", "src/"))]
        assert deps[len(deps) - len(code) :] == code, name  # data deps first
        assert set(code) == {str(p.relative_to(ROOT)) for p in output_closure(ROOT / script)}, name
        assert set(code) <= {str(p.relative_to(ROOT)) for p in closure(ROOT / script)}, name
        assert bool(tracking & set(code)) == (name == "report"), name  # editing tracking/* reruns only report
        assert not [d for d in code if d.endswith("__init__.py") and docstring_only(ROOT / d)], name
    assert tracking and "src/ddpm/tracking/queries.py" in dvc_stages()["report"]["deps"]


def test_only_the_fid_stages_load_inception_and_prepare_and_fid_ref_not_the_math():
    fid = SRC / "ddpm" / "evaluation" / "fid.py"
    math = {SRC / "ddpm" / "core" / name for name in ("diffusion.py", "sampling.py", "unet.py", "losses.py")}
    for stage in STAGES:
        files = closure(ROOT / "pipeline" / f"{stage}.py")
        assert (fid in files) == (stage in {"fid_ref", "evaluate", "ddim_fid", "solver_fid"}), stage
        if stage in ("prepare", "fid_ref", "report"):
            assert not files & math, stage


def test_the_training_loop_is_named_steps_of_at_most_80_lines():
    """training/loop.py reads as improved-diffusion's TrainLoop does: run_loop, run_step, log_step, save, …"""
    tree = ast.parse((SRC / "ddpm" / "training" / "loop.py").read_text())
    long = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno >= 80]
    assert not long
