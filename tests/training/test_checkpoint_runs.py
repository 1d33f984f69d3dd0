"""Never lose work: what training reads is stated once, checkpoints live in one run folder per fingerprint, a
change of any other section resumes, a change of training params keeps the old run's checkpoints and names what
changed, and a second process on the same params waits for the first."""

import threading
import time

import pytest
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from helpers import ROOT
from helpers.datasets import write_shards
from helpers.params import make_params

from ddpm.config import Params
from ddpm.training.checkpoints import RUN_PARAMS, list_checkpoints, save_checkpoint
from ddpm.training.fingerprint import RESUMABLE, TRAINING_PARAMS, changed_params, training_fingerprint
from ddpm.training.loop import train

TINY = {
    "model": {"ch": 32, "ch_mult": [1], "num_res_blocks": 1, "attn_resolutions": []},
    "train": {
        "batch_size": 8,
        "warmup": 0,
        "log_every": 1,
        "checkpoint_every": 2,
        "keep_checkpoints": 1,
        "shuffle_buffer": 20,
        "sample_every": 0,
    },
}  # on the tiny profile
# One valid change in every top-level section that training does not read (the test checks that these are all).
OTHER_SECTIONS = {
    "profile": "another",
    "dataset": "cifar10",
    "launcher": "accelerate launch",
    "data": {"verify": "streaming", "shard_size": 7, "test_size": 9, "limit": 100, "source": "/elsewhere"},
    "sample": {"num_samples": 3, "steps": 4, "eta": 1.0, "batch_size": 5},
    "fid": {"max_images": 7},
    "evaluate": {"nll_images": 3, "isc": False},
    "figures": {"images": 2, "frames": 3},
    "ddim_table": {"num_samples": 3, "steps": [2]},
    "solver_table": {"nfe": [3], "samplers": ["unipc_2"]},
}


def tiny(patch: dict | None = None, steps: int = 2) -> Params:
    from helpers.params import merged

    return make_params(merged(merged(TINY, {"train": {"steps": steps}}), patch or {}), profile="tiny")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tiny(), tmp_path_factory.mktemp("shards") / "digits")


def run(params: Params, shards, root, capsys=None):
    try:
        result = train(params, shards, root.parent / "ema.safetensors", root, accelerator=Accelerator(cpu=True))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    return result, (capsys.readouterr().out if capsys else "")


def test_the_train_stage_declares_exactly_the_training_params():
    """One list: DVC reruns train, MLflow's train run carries, and the fingerprint hashes exactly these."""
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["params"]
    assert declared == list(TRAINING_PARAMS)
    assert all(key.split(".")[0] in TRAINING_PARAMS for key in RESUMABLE)


def test_every_other_section_leaves_the_fingerprint_and_every_training_param_changes_it():
    assert set(OTHER_SECTIONS) == set(Params.model_fields) - set(TRAINING_PARAMS)
    base = training_fingerprint(tiny(), "data")
    for section, change in OTHER_SECTIONS.items():
        assert training_fingerprint(tiny({section: change}), "data") == base, section
    for change in (
        {"schedule": "cosine"},
        {"timesteps": 50},
        {"objective": "hybrid", "variance": "learned_range"},
        {"mean_type": "x0"},
        {"hybrid_lambda": 0.01},
        {"decoder_cdf": "exact"},
        {"timestep_sampler": "loss_aware"},
        {"seed": 1},
        {"model": {"dropout": 0.1}},
        {"train": {"lr": 2e-3}},
        {"train": {"grad_accumulation": 2}},
    ):
        assert training_fingerprint(tiny(change), "data") != base, change
    assert training_fingerprint(tiny(), "other data") != base
    for change in (
        {"train": {"steps": 9, "log_every": 3, "compile": True, "sample_every": 5}},
        {"model": {"import_from": {"format": "ddpm"}}},
    ):
        assert training_fingerprint(tiny(change), "data") == base, change


def test_changing_any_other_section_with_the_step_count_resumes(shards, tmp_path):
    root = tmp_path / "checkpoints"
    steps = 2
    first, _ = run(tiny(steps=steps), shards, root)
    for section, change in OTHER_SECTIONS.items():
        steps += 2
        result, _ = run(tiny({section: change}, steps=steps), shards, root)
        assert result.resumed_from == steps - 2 and result.checkpoints == first.checkpoints, section
    assert [p.name for p in root.iterdir()] == [first.fingerprint]


def test_other_training_params_keep_the_old_checkpoints_and_say_what_changed(shards, tmp_path, capsys):
    root = tmp_path / "checkpoints"
    first, out = run(tiny(steps=4), shards, root, capsys)
    assert out.startswith(f"train: starting at step 0 in {root / first.fingerprint}\n")
    second, out = run(tiny({"train": {"lr": 2e-3}, "seed": 3}, steps=2), shards, root, capsys)
    kept = root / first.fingerprint / "step-000000004"
    line = out.splitlines()[0]
    assert line == (
        f"train: starting at step 0 in {root / second.fingerprint}; {kept} (step 4) is kept, trained "
        "with other params: seed: 0 → 3; train.lr: 0.001 → 0.002"
    )
    assert [c.step for c in list_checkpoints(root / first.fingerprint)] == [4]
    back, out = run(tiny(steps=6), shards, root, capsys)  # the first params again: their run goes on
    assert back.resumed_from == 4 and f"train: resuming from {kept} (step 4)" in out
    assert sorted(p.name for p in root.iterdir()) == sorted([first.fingerprint, second.fingerprint])
    assert (root / first.fingerprint / RUN_PARAMS).is_file()


def test_checkpoints_written_before_run_folders_existed_are_adopted(shards, tmp_path):
    import torch

    root = tmp_path / "checkpoints"
    first, _ = run(tiny(steps=2), shards, root)
    folder = root / first.fingerprint
    flat = root / "step-000000002"
    (folder / "step-000000002").rename(flat)  # the old layout: checkpoints/step-N
    (folder / RUN_PARAMS).unlink()
    result, _ = run(tiny(steps=4), shards, root)
    assert result.resumed_from == 2 and not flat.exists()
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters())
    save_checkpoint(
        root,
        7,
        "0123456789abcdef",
        model,
        model,
        opt,
        torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
        {},
        [],
        keep=1,
    )  # another run's
    run(tiny(steps=6), shards, root)
    assert [c.step for c in list_checkpoints(root / "0123456789abcdef")] == [7]


def test_changed_params_lists_old_and_new_values():
    assert changed_params({"a": 1, "b": [1, 2], "c": "x"}, {"a": 1, "b": [1, 3], "d": True}) == [
        "b: [1, 2] → [1, 3]",
        "c: x → (absent)",
        "d: (absent) → True",
    ]


def test_a_second_process_on_the_same_run_folder_waits_for_the_first(tmp_path):
    from ddpm.storage.files import exclusive_lock

    lock = tmp_path / "run" / ".lock"
    held, release, order = threading.Event(), threading.Event(), []

    def first():
        with exclusive_lock(lock):
            held.set()
            release.wait(10)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    waited = []
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    with exclusive_lock(lock, on_wait=waited.append):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"] and time.monotonic() - start >= 0.25
    assert len(waited) == 1 and waited[0].startswith("pid ")


def test_the_warm_up_before_the_first_logged_step_is_logged_so_the_lr_chart_shows_it(shards, tmp_path):
    """With a warm-up of 6 steps and a log every 4, the lr series holds the ramp: steps 1–3 from the warm-up,
    then every logged step (MLflow draws a constant series as a flat line at its axis' zero)."""
    logged: list[tuple[int, float]] = []
    params = tiny({"train": {"warmup": 6, "log_every": 4, "lr": 1e-3}}, steps=8)
    try:
        train(
            params,
            shards,
            tmp_path / "ema.safetensors",
            tmp_path / "checkpoints",
            log=lambda metrics, step: logged.append((step, metrics["lr"])),
            accelerator=Accelerator(cpu=True),
        )
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    steps = [s for s, _ in logged]
    assert steps == [1, 2, 3, 4, 8]
    lrs = dict(logged)
    assert all(abs(lrs[s] - 1e-3 * min(1.0, (s + 1) / 6)) < 1e-12 for s in steps)  # the scheduler's own values
