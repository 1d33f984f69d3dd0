"""Every compute stage runs where the runner puts it: one device from Accelerate, handed to every library call
that computes; no library function falls back to the CPU by itself."""

import ast
import importlib
import inspect

import pytest
import yaml
from dvc_deps import ROOT, SRC, library_files

from ddpm.stage.placement import Placement

NOT_COMPUTE = {"check", "prepare", "report"}  # read and write files only
STAGES = sorted(p.stem for p in (ROOT / "pipeline").glob("*.py"))


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_library_function_defaults_its_device(path):
    """A ``device`` parameter has no default; only the core math's samplers may take None, which means "where the
    given noise or generator is"."""
    tree = ast.parse(path.read_text())
    core = path.parent.name == "core"
    for fn in _functions(tree):
        args = fn.args.args + fn.args.kwonlyargs
        defaults = dict(zip([a.arg for a in fn.args.args][::-1], fn.args.defaults[::-1], strict=False))
        defaults |= {a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True) if d is not None}
        for arg in args:
            if arg.arg == "device" and arg.arg in defaults:
                default = ast.unparse(defaults[arg.arg])
                assert core and default == "None", f"{path.name}:{fn.lineno} {fn.name}(device={default})"
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        for kw in call.keywords:
            assert not (kw.arg == "device" and isinstance(kw.value, ast.Constant)), (
                f"{path.name}:{call.lineno} passes device={ast.unparse(kw.value)}"
            )


def _resolve(name: str, imports: dict[str, object]):
    head, _, rest = name.partition(".")
    obj = imports.get(head)
    for part in filter(None, rest.split(".")):
        obj = getattr(obj, part, None)
    return obj if callable(obj) else None


def _imported(module: str, name: str):
    try:
        return importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        return getattr(importlib.import_module(module), name)


def _placement_names(main: ast.FunctionDef) -> set[str]:
    """Local names bound to ``placement.device`` in the stage body."""
    names = set()
    for node in ast.walk(main):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = (
                    zip(target.elts, node.value.elts, strict=False)
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                    else [(target, node.value)]
                )
                names |= {t.id for t, v in pairs if isinstance(t, ast.Name) and ast.unparse(v) == "placement.device"}
    return names


@pytest.mark.parametrize("stage", sorted(set(STAGES) - NOT_COMPUTE))
def test_every_compute_stage_hands_the_runners_device_to_each_call_that_computes(stage):
    tree = ast.parse((ROOT / "pipeline" / f"{stage}.py").read_text())
    imports = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddpm"):
            for alias in node.names:
                imports[alias.asname or alias.name] = _imported(node.module, alias.name)
    main = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "main")
    assert [a.arg for a in main.args.args] == ["params", "paths", "run", "placement"]
    device_names = _placement_names(main) | {"placement.device"}
    checked = 0
    for call in (n for n in ast.walk(main) if isinstance(n, ast.Call)):
        fn = _resolve(ast.unparse(call.func), imports)
        if fn is None or "device" not in inspect.signature(fn).parameters:
            continue
        bound = inspect.signature(fn).bind_partial(*call.args, **{k.arg: k.value for k in call.keywords})
        given = bound.arguments.get("device")
        assert given is not None and ast.unparse(given) in device_names, (
            f"pipeline/{stage}.py:{call.lineno} {ast.unparse(call.func)} does not get placement.device"
        )
        checked += 1
    last = tree.body[-1]
    assert "compute=True" in ast.unparse(last), f"pipeline/{stage}.py: stage_main(..., compute=True)"
    if stage != "train":  # train's device is its Accelerator's, the same process group's
        assert checked, f"pipeline/{stage}.py calls nothing that takes a device"


def test_compute_stages_start_through_the_launcher_and_the_others_do_not():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        launcher = "${launcher} " if name not in NOT_COMPUTE else "python "
        assert stage["cmd"].startswith(f"sh pipeline/run.sh {launcher}pipeline/"), name


def test_placement_records_device_processes_time_and_memory():
    summary = Placement.start().summary()
    assert summary["device"] == "cpu" and summary["num_processes"] == 1
    assert summary["wall_seconds"] >= 0 and summary["peak_accelerator_memory_gib"] == 0
    assert summary["peak_host_memory_gib"] > 0


RANKS = """
import sys
from pathlib import Path
from ddpm.stage.placement import Placement
placement = Placement.start()
line = f"{placement.share.rank} {placement.share.world} {placement.device.type}"
Path(sys.argv[1], f"rank{placement.share.rank}").write_text(line)  # a file each: two ranks' stdout interleave
"""


def test_two_cpu_ranks_under_the_documented_launch_form_one_group(tmp_path):
    """`ACCELERATE_USE_CPU=1 accelerate launch --config_file conf/accelerate/cpu_2proc.yaml` (README): each rank
    must see a world of 2. (Accelerate's PartialState reads ACCELERATE_USE_CPU only through an Accelerator; without
    it here each rank ran the whole stage alone.)"""
    import os
    import subprocess
    import sys

    script, out = tmp_path / "ranks.py", tmp_path / "out"
    script.write_text(RANKS)
    out.mkdir()
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    config = ROOT / "conf" / "accelerate" / "cpu_2proc.yaml"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(config),
            "--main_process_port",
            "0",
            str(script),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.read_text() for p in out.iterdir()) == ["0 2 cpu", "1 2 cpu"]
