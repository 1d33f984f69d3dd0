import pytest
import torch
from helpers.params import make_params

from ddpm.training.telemetry import Telemetry


def test_telemetry_means_and_quartiles_of_t():
    tel = Telemetry(num_timesteps=100)
    tel.add(
        torch.tensor(2.0), {"loss": torch.tensor([1.0, 3.0]), "mse": torch.tensor([0.5, 1.5])}, torch.tensor([0, 99])
    )
    tel.add(
        torch.tensor(4.0), {"loss": torch.tensor([5.0, 7.0]), "mse": torch.tensor([1.0, 1.0])}, torch.tensor([24, 25])
    )
    s = tel.summary(images_per_step=2)
    assert s["loss"] == 3.0 and s["mse"] == 1.0
    assert (s["loss_q0"], s["loss_q1"], s["loss_q3"]) == (3.0, 7.0, 3.0)  # t=0,24 | t=25 | t=99
    assert "loss_q2" not in s and s["images_per_second"] > 0
    tel.reset()
    assert "loss" not in tel.summary(2)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import pytest
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from ddpm.core.diffusion import GaussianDiffusion
    from ddpm.data import shards, sources
    from ddpm.training.checkpoints import list_checkpoints
    from ddpm.training.loop import train

    p = make_params(
        {
            "dataset": "digits",
            "timesteps": 50,
            "data": {"resolution": 8},
            "model": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": []},
            "train": {"steps": 30, "batch_size": 16, "checkpoint_every": 10, "log_every": 5, "shuffle_buffer": 50},
        }
    )
    shard_dir = tmp_path / "digits"
    shards.write_dataset({"train": sources.iter_split(p, "train")}, shard_dir, 500, {})
    original, calls = GaussianDiffusion.training_losses, {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        terms = original(self, *args, **kwargs)
        if calls["n"] == 25:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(GaussianDiffusion, "training_losses", poisoned)
    try:
        with pytest.raises(FloatingPointError, match="train: loss is nan at step 25; stopping"):
            train(p, shard_dir, tmp_path / "ema.safetensors", tmp_path / "ck", accelerator=Accelerator(cpu=True))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)  # leave no process-wide state to later tests
    [folder] = [p for p in (tmp_path / "ck").iterdir()]  # the run folder of these params
    assert [c.step for c in list_checkpoints(folder)] == [10, 20]
    assert not (tmp_path / "ema.safetensors").exists()


def test_ema_sample_grid_is_reproducible_and_leaves_training_randomness_alone():
    from ddpm.core.diffusion import GaussianDiffusion
    from ddpm.core.schedules import get_beta_schedule
    from ddpm.core.unet import UNet, UNetConfig
    from ddpm.training.telemetry import ema_sample_grid

    model = UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1, 2), attn_resolutions=(), resolution=8)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    diffusion = GaussianDiffusion(get_beta_schedule("linear", 50))
    torch.manual_seed(5)
    expected_next = torch.rand(1)
    torch.manual_seed(5)
    a = ema_sample_grid(diffusion, model, 4, (1, 8, 8), 5, seed=0, device="cpu")
    assert torch.equal(torch.rand(1), expected_next)  # the global generator was not advanced
    b = ema_sample_grid(diffusion, model, 4, (1, 8, 8), 5, seed=0, device="cpu")
    assert a.shape == (4, 8, 8, 1) and a.dtype.name == "uint8" and (a == b).all()


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    from accelerate.state import AcceleratorState

    from ddpm.data import shards, sources
    from ddpm.training.loop import make_accelerator, train

    p = make_params(
        {
            "dataset": "digits",
            "timesteps": 50,
            "objective": "hybrid",
            "variance": "learned_range",
            "data": {"resolution": 8},
            "model": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4]},
            "train": {
                "steps": 4,
                "batch_size": 8,
                "grad_accumulation": 2,
                "mixed_precision": "bf16",
                "channels_last": True,
                "activation_checkpointing": True,
                "log_every": 2,
                "shuffle_buffer": 50,
            },
        }
    )
    shard_dir = tmp_path / "digits"
    shards.write_dataset({"train": sources.iter_split(p, "train")}, shard_dir, 500, {})
    try:
        acc = make_accelerator(p)
        assert acc.mixed_precision == "bf16"
        result = train(p, shard_dir, tmp_path / "ema.safetensors", tmp_path / "ck", accelerator=acc)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert result.steps == 4 and torch.isfinite(torch.tensor(result.final_loss))
    from ddpm.storage.model_files import load_model

    assert next(load_model(tmp_path / "ema.safetensors", "cpu").parameters()).dtype == torch.float32  # EMA kept in fp32


def test_fp16_without_a_gpu_is_refused_naming_the_key():
    import pytest

    from ddpm.training.loop import make_accelerator

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="train.mixed_precision: 'fp16' needs a CUDA GPU"):
        make_accelerator(make_params({"train": {"mixed_precision": "fp16"}}))


def test_the_ema_keeps_the_training_layout_and_saves_contiguous_weights(tmp_path, monkeypatch):
    """The EMA's tensors have the network's strides (channels_last), so its foreach update pairs like with like;
    the weights it saves are contiguous."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from helpers.datasets import write_shards
    from safetensors import safe_open

    from ddpm.training.ema import EMA
    from ddpm.training.loop import train

    p = make_params(
        {
            "model": {"ch": 32, "ch_mult": [1], "num_res_blocks": 1, "attn_resolutions": []},
            "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 2, "sample_every": 0, "channels_last": True},
        },
        profile="tiny",
    )
    shards = write_shards(p, tmp_path / "digits")
    pairs: list[bool] = []
    update = EMA.update

    def recording(self, model):
        pairs.extend(e.stride() == q.stride() for e, q in zip(self.model.parameters(), model.parameters(), strict=True))
        update(self, model)

    monkeypatch.setattr(EMA, "update", recording)
    try:
        train(p, shards, tmp_path / "ema.safetensors", tmp_path / "ck", accelerator=Accelerator(cpu=True))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert pairs and all(pairs)
    with safe_open(str(tmp_path / "ema.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(k).is_contiguous() for k in f.keys())  # noqa: SIM118 - safe_open is no dict


def _trained_weights(params, shards, folder) -> bytes:
    """The EMA weights file ``train`` writes for ``params`` (one CPU process, its checkpoints in ``folder``)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from ddpm.training.loop import train

    try:
        train(params, shards, folder / "ema.safetensors", folder / "ck", accelerator=Accelerator(cpu=True))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    return (folder / "ema.safetensors").read_bytes()


def test_deterministic_training_runs_on_cpu_with_the_same_weights_and_restores_the_setting(tmp_path, monkeypatch):
    """train.deterministic turns PyTorch's deterministic algorithms on for the training only (every kernel the
    network uses has a deterministic version); on a CPU the weights are those of a default run, and the checkpoint
    fingerprint ignores the setting (it changes no result beyond float rounding on a GPU)."""
    from helpers.datasets import write_shards

    from ddpm.training.ema import EMA
    from ddpm.training.fingerprint import training_fingerprint

    def params(deterministic: bool):
        model = {"ch": 32, "ch_mult": [1], "num_res_blocks": 1, "attn_resolutions": []}
        loop = {"steps": 2, "batch_size": 8, "checkpoint_every": 2, "sample_every": 0, "deterministic": deterministic}
        return make_params({"model": model, "train": loop}, profile="tiny")

    assert training_fingerprint(params(True), "d") == training_fingerprint(params(False), "d")
    shards = write_shards(params(False), tmp_path / "digits")
    seen: list[bool] = []
    update = EMA.update
    monkeypatch.setattr(
        EMA, "update", lambda self, m: (seen.append(torch.are_deterministic_algorithms_enabled()), update(self, m))
    )
    weights = {flag: _trained_weights(params(flag), shards, tmp_path / str(flag)) for flag in (True, False)}
    assert seen == [True, True, False, False] and not torch.are_deterministic_algorithms_enabled()
    assert weights[True] == weights[False]


def test_the_number_of_loader_workers_changes_no_weight_and_no_fingerprint(tmp_path):
    """The batches are the same for any number of DataLoader workers, so the trained weights are too (and a
    checkpoint resumes under another number)."""
    from helpers.datasets import write_shards

    from ddpm.training.fingerprint import training_fingerprint

    def params(workers: int):
        model = {"ch": 32, "ch_mult": [1], "num_res_blocks": 1, "attn_resolutions": []}
        loop = {"steps": 6, "batch_size": 8, "checkpoint_every": 3, "sample_every": 0, "loader_workers": workers}
        return make_params({"model": model, "train": loop}, profile="tiny")

    assert training_fingerprint(params(0), "d") == training_fingerprint(params(2), "d")
    shards = write_shards(params(0), tmp_path / "digits")
    weights = {workers: _trained_weights(params(workers), shards, tmp_path / str(workers)) for workers in (0, 2)}
    assert weights[0] == weights[2]


def _step_setup():
    from accelerate import Accelerator

    from ddpm.core.diffusion import GaussianDiffusion
    from ddpm.core.schedules import get_beta_schedule
    from ddpm.core.unet import UNet, UNetConfig
    from ddpm.training.step import build_optimizer

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = UNet(UNetConfig(in_channels=1, ch=32, ch_mult=(1,), attn_resolutions=(), resolution=8, dropout=0.0))
    optimizer = build_optimizer(model, 1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model, optimizer, GaussianDiffusion(get_beta_schedule("linear", 50))


def test_a_non_finite_step_changes_no_parameter_and_no_adam_moment_and_is_named_at_the_check(monkeypatch):
    from accelerate.state import AcceleratorState

    from ddpm.core.diffusion import GaussianDiffusion
    from ddpm.training.step import Divergence, MicroBatch, optimization_step

    try:
        accelerator, model, optimizer, diffusion = _step_setup()
        x0, t = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([1, 5, 10, 19])
        batch = [MicroBatch(x0, t, torch.ones(4))]
        divergence = Divergence(torch.device("cpu"), loss_scaled=False)
        loss, _, norm = optimization_step(accelerator, model, diffusion, optimizer, batch, 1.0)
        divergence.add(1, loss, norm)
        divergence.check(1, lambda v: v)  # finite: nothing to say
        before = {k: v.clone() for k, v in model.state_dict().items()}
        moments = {k: {n: v.clone() for n, v in s.items()} for k, s in optimizer.state_dict()["state"].items()}
        original = GaussianDiffusion.training_losses

        def poisoned(self, *args, **kwargs):
            terms = original(self, *args, **kwargs)
            terms["loss"] = terms["loss"] * float("nan")
            return terms

        monkeypatch.setattr(GaussianDiffusion, "training_losses", poisoned)
        loss, _, norm = optimization_step(accelerator, model, diffusion, optimizer, batch, 1.0)
        divergence.add(2, loss, norm)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        after = optimizer.state_dict()["state"]
        assert all(torch.equal(moments[k][n], after[k][n]) for k in moments for n in moments[k])  # incl. the step
        assert not hasattr(optimizer.optimizer, "found_inf")
        divergence.add(3, torch.tensor(float("inf"), dtype=torch.float64), torch.tensor(float("nan")))
        with pytest.raises(FloatingPointError, match=r"^train: loss is nan at step 2$"):
            divergence.check(3, lambda v: v)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_the_training_step_never_waits_for_the_device(monkeypatch):
    """No value of a device tensor is read on the host inside a step (on a GPU each read waits for every kernel
    queued before it): reading one here raises."""
    from accelerate.state import AcceleratorState

    from ddpm.training.step import Divergence, MicroBatch, optimization_step

    def refuse(*args, **kwargs):
        raise AssertionError("a host read of a tensor inside the training step")

    try:
        accelerator, model, optimizer, diffusion = _step_setup()
        divergence = Divergence(torch.device("cpu"), loss_scaled=False)
        batch = [MicroBatch(torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([1, 5, 10, 19]), torch.ones(4))]
        with monkeypatch.context() as m:
            for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
                m.setattr(torch.Tensor, name, refuse)
            for step, clip in ((1, 1.0), (2, None)):
                loss, _, norm = optimization_step(accelerator, model, diffusion, optimizer, batch, clip)
                divergence.add(step, loss, norm)
        divergence.check(2, lambda v: v)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
