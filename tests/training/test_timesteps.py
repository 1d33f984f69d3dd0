import numpy as np
import pytest
import torch

from ddpm.training.timesteps import LossAwareTimesteps, UniformTimesteps, make_timesteps


def warm_sampler(T=8, seed=0):
    s = LossAwareTimesteps(T)
    rng = np.random.default_rng(seed)
    for _ in range(s.history_size):
        s.update(torch.arange(T), torch.from_numpy(rng.uniform(0.1, 2.0, T) * np.arange(1, T + 1)))
    return s


def test_uniform_weights_are_one():
    t, w = UniformTimesteps(10).draw(1000, "cpu", torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= 9 and torch.allclose(w, torch.ones(1000))


def test_loss_aware_is_uniform_until_every_step_is_warm():
    s = LossAwareTimesteps(4)
    for _ in range(9):
        s.update(torch.arange(4), torch.ones(4))
    s.update(torch.tensor([0, 1, 2]), torch.ones(3))  # step 3 still has only 9 losses
    assert not s.warm() and np.allclose(s.probabilities(), 0.25)
    s.update(torch.tensor([3]), torch.ones(1))
    assert s.warm()


def test_loss_aware_probabilities_follow_rms_loss_mixed_with_uniform():
    s = LossAwareTimesteps(3, history=2, uniform_prob=0.1)
    s.update(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1.0, 1.0, 3.0, 4.0, 0.0, 0.0]))
    rms = np.array([1.0, np.sqrt(12.5), 0.0])
    np.testing.assert_allclose(s.probabilities(), 0.9 * rms / rms.sum() + 0.1 / 3)
    s.update(torch.tensor([1]), torch.tensor([5.0]))  # keeps the last two: 4, 5
    assert s.history[1].tolist() == [4.0, 5.0]


def test_importance_weights_are_unbiased_exactly_and_by_monte_carlo():
    s = warm_sampler()
    losses = torch.linspace(0.5, 3.0, 8, dtype=torch.float64)
    p = s.probabilities()
    weights = 1.0 / (8 * p)
    assert float((p * weights * losses.numpy()).sum()) == pytest.approx(losses.mean().item(), rel=1e-12)
    t, w = s.draw(400_000, "cpu", torch.Generator().manual_seed(1))
    assert (w.double() * losses[t]).mean().item() == pytest.approx(losses.mean().item(), rel=0.01)
    assert not np.allclose(p, 1 / 8)  # it really is non-uniform


def test_state_roundtrip_and_factory():
    s = warm_sampler()
    fresh = make_timesteps("loss_aware", 8)
    fresh.load_state_dict(s.state_dict())
    np.testing.assert_array_equal(fresh.probabilities(), s.probabilities())
    with pytest.raises(ValueError, match="timestep_sampler: unknown value 'greedy'; allowed: uniform, loss_aware"):
        make_timesteps("greedy", 8)
