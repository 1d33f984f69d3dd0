import torch

from ddpm.config import validate_params
from ddpm.train import Telemetry, training_fingerprint


def test_telemetry_means_and_quartiles_of_t():
    tel = Telemetry(num_timesteps=100)
    tel.add(2.0, {"loss": torch.tensor([1.0, 3.0]), "mse": torch.tensor([0.5, 1.5])}, torch.tensor([0, 99]))
    tel.add(4.0, {"loss": torch.tensor([5.0, 7.0]), "mse": torch.tensor([1.0, 1.0])}, torch.tensor([24, 25]))
    s = tel.summary(images_per_step=2)
    assert s["loss"] == 3.0 and s["mse"] == 1.0
    assert (s["loss_q0"], s["loss_q1"], s["loss_q3"]) == (3.0, 7.0, 3.0)  # t=0,24 | t=25 | t=99
    assert "loss_q2" not in s and s["images_per_second"] > 0
    tel.reset()
    assert "loss" not in tel.summary(2)


def test_training_fingerprint_ignores_step_count_and_logging_only():
    base = validate_params({})
    longer = validate_params({"train": {"steps": 10, "log_every": 7, "keep_checkpoints": 5},
                              "sample": {"num_samples": 3}})
    assert training_fingerprint(base) == training_fingerprint(longer)
    assert training_fingerprint(base) != training_fingerprint(validate_params({"train": {"lr": 1e-3}}))
    assert training_fingerprint(base) != training_fingerprint(validate_params({"schedule": "cosine"}))
