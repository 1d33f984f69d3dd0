import subprocess
import sys

import numpy as np
import pytest
import torch
import torch_fidelity
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.metric_fid import fid_statistics_to_metric

from ddpm.evaluation import fid, fidelity


def test_weights_are_the_pinned_file():
    assert fid.verified_weights_path().name == "default_1.pt"


def test_frechet_distance_golden_value():
    d = 6
    a = {"mu": np.zeros(d), "sigma": np.eye(d)}
    b = {"mu": np.eye(d)[0], "sigma": 4 * np.eye(d)}
    # ‖Δμ‖² + tr(Σa + Σb − 2 (Σa Σb)^½) = 1 + d (1 + 4 − 4)
    assert fid.frechet_distance(a, b) == pytest.approx(1 + d)
    assert fid.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_two_points_against_a_round_gaussian():
    """Features ±e₁ (n = 2 ≤ d): μa = 0, Σa = 2 e₁e₁ᵀ (divisor n − 1 = 1); against μb = e₂, Σb = 4 I the product
    Σa Σb = 8 e₁e₁ᵀ has one nonzero eigenvalue, 8, so FID = ‖e₂‖² + 2 + 4d − 2·√8. Both routes to the trace."""
    d = 5
    features = np.stack([np.eye(d)[0], -np.eye(d)[0]])
    a, b = fid.statistics(features), {"mu": np.eye(d)[1], "sigma": 4 * np.eye(d)}
    expected = 1 + 2 + 4 * d - 2 * np.sqrt(8)
    assert fid.frechet_distance(a, b, features) == pytest.approx(expected, rel=1e-12)
    assert fid.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [6, 40, 80])
def test_frechet_distance_from_the_features_equals_the_d_by_d_route_and_torch_fidelity(n):
    """n < d, n = d and n > d samples in d = 40 dimensions: the n×n eigenproblem gives the trace of the d×d one;
    without features the computation is TTUR's, as torch-fidelity codes it."""
    rng = np.random.default_rng(n)
    d = 40
    features = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / 4 + 1
    ref_feats = rng.normal(size=(200, d)) @ rng.normal(size=(d, d)) / 4
    a, b = fid.statistics(features), fid.statistics(ref_feats)
    full = fid.frechet_distance(a, b)
    assert full == pytest.approx(fid_statistics_to_metric(a, b, False)["frechet_inception_distance"], rel=1e-12)
    assert fid.frechet_distance(a, b, features) == pytest.approx(full, rel=1e-7, abs=1e-6)


def test_fid_processes_do_not_import_the_torch_fidelity_package():
    """The stages that compute features and FID (fid_ref, the FID cells) skip torch-fidelity's ~1.2 s import
    (torchvision, torch._dynamo); the resize is torch-fidelity's own function, bit for bit."""
    code = (
        "import sys, torch; from ddpm.evaluation import fid, fid_cells; "
        "fid.feature_extractor('cpu')(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)); "
        "print(sorted(m for m in ('torch_fidelity', 'torchvision', 'torch._dynamo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 255
    ours = fid.tf1_bilinear_resize()(x, size=(299, 299), align_corners=False)
    assert torch.equal(ours, interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False))


def test_statistics_need_two_images():
    with pytest.raises(ValueError, match="need at least 2 images"):
        fid.statistics(np.zeros((1, 2048)))


def test_extractor_rejects_float_input():
    with pytest.raises(ValueError, match="FID input: expected uint8"):
        fid.feature_extractor("cpu")(torch.zeros(1, 3, 8, 8))


def test_registered_extractor_runs_offline_through_torch_fidelity():
    """calculate_metrics(fid=True) with our registered TF-Inception: no download, grayscale expanded to RGB."""
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(6, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    b = (torch.rand(6, 3, 8, 8, generator=g) * 128).to(torch.uint8)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    out = torch_fidelity.calculate_metrics(
        input1=Images(a),
        input2=Images(b),
        fid=True,
        cuda=False,
        feature_extractor=fidelity.EXTRACTOR_NAME,
        verbose=False,
        save_cpu_ram=True,
    )
    stats_a, stats_b = (fid.statistics(fid.inception_features([x], "cpu")) for x in (a, b))
    ours = fid.frechet_distance(stats_a, stats_b)
    assert np.isfinite(out["frechet_inception_distance"])
    assert out["frechet_inception_distance"] == pytest.approx(ours, rel=1e-3)
    gray = fid.inception_features([a[:, :1]], "cpu")
    np.testing.assert_allclose(gray, fid.inception_features([a[:, :1].expand(-1, 3, -1, -1)], "cpu"))


def test_statistics_roundtrip(tmp_path):
    stats = fid.statistics(np.random.default_rng(0).normal(size=(10, 4)))
    fid.save_statistics(tmp_path / "ref.npz", stats, count=10)
    back = fid.load_statistics(tmp_path / "ref.npz")
    np.testing.assert_array_equal(back["mu"], stats["mu"])
    assert back["count"] == 10 and [p.name for p in tmp_path.iterdir()] == ["ref.npz"]
    with pytest.raises(FileNotFoundError, match="run the fid_ref stage"):
        fid.load_statistics(tmp_path / "none.npz")


def test_kid_and_precision_recall_separate_matching_from_shifted_features():
    import numpy as np

    from ddpm.evaluation.fidelity import kid_precision_recall

    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 16))
    same = kid_precision_recall(rng.normal(size=(200, 16)), real, 100, 0, "cpu")
    shifted = kid_precision_recall(rng.normal(size=(200, 16)) + 3.0, real, 100, 0, "cpu")
    assert abs(same["kid"]) < 0.05 and same["precision"] > 0.6 and same["recall"] > 0.6
    assert shifted["kid"] > 1.0 and shifted["precision"] < 0.2 and shifted["recall"] < 0.2


def test_kid_is_torch_fidelitys_with_its_subsets_and_leaves_the_thread_count_as_it_was():
    import numpy as np
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    from ddpm.evaluation.fidelity import kid_precision_recall
    from ddpm.evaluation.kid import kernel_inception_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(150, 32)), rng.normal(size=(120, 32)) + 0.3
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subset_size=50, rng_seed=7)
    mean, std = kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(b), 50, seed=7)
    # the same subsets; sums in another order: float64 rounding of values of order 1
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9, abs=1e-12)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9, abs=1e-12)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `accelerate launch` starts each process
    try:
        kid_precision_recall(a, b, 50, 0, "cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_mmd2_of_two_points_each_against_a_hand_derived_value():
    """x = {1, −1}, y = {1, 1} in d = 1: k(a, b) = (ab + 1)³ gives k(1, −1) = 0, k(1, 1) = 8; unbiased MMD² =
    [k(x1, x2) + k(x2, x1) + k(y1, y2) + k(y2, y1)] / 2 − 2 · Σ k(x_i, y_j) / 4 = (0 + 16) / 2 − 2 · 16 / 4 = 0."""
    import torch

    from ddpm.evaluation.kid import mmd2_unbiased

    x, y = torch.tensor([[1.0], [-1.0]], dtype=torch.float64), torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    assert float(mmd2_unbiased(x, y)) == 0.0
    # y = {2, 2}: k(2, 2) = 125, k(±1, 2) = 27 or −1 → (0 + 250) / 2 − 2 · (27 + 27 − 1 − 1) / 4 = 125 − 26 = 99
    assert float(mmd2_unbiased(x, 2 * y)) == 99.0


def test_statistics_files_keep_features_for_kid_and_say_when_they_lack_them(tmp_path):
    import numpy as np
    import pytest

    from ddpm.evaluation.fid import load_features, save_statistics, statistics

    feats = np.random.default_rng(0).normal(size=(10, 4))
    save_statistics(tmp_path / "ref.npz", statistics(feats), feats[:6], count=10)
    assert load_features(tmp_path / "ref.npz").shape == (6, 4)
    save_statistics(tmp_path / "old.npz", statistics(feats), count=10)
    with pytest.raises(ValueError, match="old.npz holds no features .* rerun the fid_ref stage"):
        load_features(tmp_path / "old.npz")


def test_channels_last_on_cpu_gives_the_plain_layouts_features():
    """The extractor feeds the CPU network NHWC tensors (faster there); the features are those of the NCHW input
    up to float32 summation order (measured ≤ 1e-5; pool3 features are O(0.1–1))."""
    x = (torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    extractor = fid.feature_extractor("cpu")
    ours = extractor(x)
    resized = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        plain = extractor.model(((resized - 128.0) / 128.0).contiguous())
    torch.testing.assert_close(ours, plain, rtol=1e-4, atol=1e-4)
