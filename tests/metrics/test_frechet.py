"""FID / KID / FRD checked against scipy.linalg.sqrtm and torchmetrics on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from medisynth.errors import ConfigError
from medisynth.metrics import frechet

RNG = np.random.default_rng(0)


def _reference_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy.linalg.sqrtm (pytorch-fid style)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class _Identity(torch.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.num_features = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("n, dim", [(80, 6), (200, 32), (30, 50)])  # last: rank-deficient
def test_fid_matches_scipy_sqrtm(n: int, dim: int) -> None:
    a = RNG.normal(size=(n, dim))
    b = RNG.normal(size=(n + 7, dim)) * 1.4 + 0.3
    assert frechet.fid(a, b) == pytest.approx(_reference_fd(a, b), rel=1e-6, abs=1e-6)


def test_fid_matches_torchmetrics() -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = RNG.normal(size=(60, 8)), RNG.gamma(2.0, size=(50, 8))
    metric = FrechetInceptionDistance(feature=_Identity(8), normalize=False)
    metric.set_dtype(torch.float64)
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b), real=False)
    assert frechet.fid(a, b) == pytest.approx(float(metric.compute()), rel=1e-6)


def test_fid_analytic_cases() -> None:
    a = RNG.normal(size=(100, 5))
    assert frechet.fid(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet.fid(a, a + 2.0) == pytest.approx(5 * 4.0)  # mean shift only
    # isotropic Gaussians: |mu|^2 + d (s1 + s2 - 2 sqrt(s1 s2))
    assert frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), 9 * np.eye(3)) == (
        pytest.approx(3 * (1 + 9 - 2 * 3))
    )


def test_kid_matches_torchmetrics_on_the_full_sets() -> None:
    from torchmetrics.image.kid import KernelInceptionDistance

    a, b = RNG.normal(size=(40, 6)), RNG.normal(size=(40, 6)) + 0.5
    metric = KernelInceptionDistance(feature=_Identity(6), subsets=1, subset_size=40)
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b), real=False)
    mean, std = frechet.kid(a, b, subsets=1, subset_size=40)
    assert mean == pytest.approx(float(metric.compute()[0]), rel=1e-9)
    assert np.isnan(std)


def test_kid_subsets_match_sklearn_kernel() -> None:
    from sklearn.metrics.pairwise import polynomial_kernel

    a, b = RNG.normal(size=(50, 4)), RNG.normal(size=(60, 4)) * 2
    mean, std = frechet.kid(a, b, subsets=10, subset_size=20, seed=3)
    rng = np.random.default_rng(3)
    values = []
    for _ in range(10):
        x = a[rng.choice(50, 20, replace=False)]
        y = b[rng.choice(60, 20, replace=False)]
        kxx, kyy = polynomial_kernel(x, degree=3, coef0=1), polynomial_kernel(y, degree=3, coef0=1)
        kxy = polynomial_kernel(x, y, degree=3, coef0=1)
        values.append(
            (kxx.sum() - np.trace(kxx)) / 380 + (kyy.sum() - np.trace(kyy)) / 380 - 2 * kxy.mean()
        )
    assert mean == pytest.approx(np.mean(values))
    assert std == pytest.approx(np.std(values, ddof=1))


def test_kid_is_unbiased_near_zero_for_same_distribution() -> None:
    a, b = RNG.normal(size=(300, 4)), RNG.normal(size=(300, 4))
    mean, std = frechet.kid(a, b, subsets=20, subset_size=100)
    assert abs(mean) < 3 * std


def test_frd_is_fd_of_reference_zscored_features() -> None:
    ref = RNG.normal(size=(80, 4)) * [1, 10, 100, 1000] + 5
    other = RNG.normal(size=(70, 4)) * [2, 10, 50, 1000]
    mu, sd = ref.mean(0), ref.std(0)
    expected = _reference_fd((ref - mu) / sd, (other - mu) / sd)
    assert frechet.frd(ref, other) == pytest.approx(expected, rel=1e-6)


def test_frd_matches_the_frd_score_package() -> None:
    """The same features through frd-score's own FRDv1 steps: z-score with the first set's
    statistics (its ``norm_ref="d1"``), drop non-finite columns, Fréchet distance, log."""
    frd_score = pytest.importorskip("frd_score.frd", reason="frd-score is not installed")
    ref = RNG.gamma(2.0, size=(120, 12)) * np.logspace(-2, 3, 12)
    other = RNG.gamma(2.5, size=(90, 12)) * np.logspace(-2, 3, 12)
    ref[:, 3] = 7.0  # constant in the reference: dropped by both
    z = [frd_score.z_score_normalize(x, 0, 1, base_distribution=ref, handle_std_zero=False)
         for x in (ref, other)]  # fmt: skip
    keep = np.all([np.isfinite(x).all(axis=0) for x in z], axis=0)
    z = [x[:, keep] for x in z]
    squared = frd_score.calculate_frechet_distance(
        z[0].mean(0), np.cov(z[0], rowvar=False), z[1].mean(0), np.cov(z[1], rowvar=False)
    )
    assert frechet.frd(ref, other) == pytest.approx(squared, rel=1e-8)
    assert frechet.frd_log(frechet.frd(ref, other)) == pytest.approx(np.log(squared), rel=1e-9)


def test_frd_ignores_units_and_constant_features() -> None:
    ref, other = RNG.normal(size=(50, 3)), RNG.normal(size=(50, 3)) + 1
    scale = np.array([1e-3, 1.0, 1e4])
    assert frechet.frd(ref * scale, other * scale) == pytest.approx(frechet.frd(ref, other))
    with_constant = [np.hstack([x, np.ones((50, 1))]) for x in (ref, other)]
    assert frechet.frd(*with_constant) == pytest.approx(frechet.frd(ref, other))


def test_relative_fd() -> None:
    assert frechet.relative_fd(5.0, 10.0) == 0.5
    assert frechet.relative_fd(5.0, 0.0) == float("inf")


def test_triplanar_fid_per_plane() -> None:
    a, b = RNG.random((8, 1, 6, 6, 6)), RNG.random((8, 1, 6, 6, 6)) ** 2
    out = frechet.triplanar_fid(a, b, extractor="pixels")
    axial = _reference_fd(a[:, 0, 3].reshape(8, -1), b[:, 0, 3].reshape(8, -1))
    assert out["axial"] == pytest.approx(axial, rel=1e-6)
    assert out["mean"] == pytest.approx(np.mean([out["axial"], out["coronal"], out["sagittal"]]))


@pytest.mark.parametrize(
    "a, b",
    [
        (np.zeros((1, 3)), np.zeros((5, 3))),
        (np.zeros((5, 3)), np.zeros((5, 4))),
        (np.full((5, 3), np.nan), np.zeros((5, 3))),
    ],
)
def test_bad_features_are_refused(a: np.ndarray, b: np.ndarray) -> None:
    with pytest.raises(ConfigError):
        frechet.fid(a, b)
