"""Near-copies, calibration, the data-copying test C_T, and real-vs-real duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medisynth.errors import ConfigError
from medisynth.metrics import memorization as M

RNG = np.random.default_rng(0)


def test_mann_whitney_z_matches_scipy() -> None:
    from scipy.stats import mannwhitneyu

    q, p = RNG.normal(size=17), RNG.normal(size=23) + 0.5
    q[3] = p[5]  # a tie
    u = mannwhitneyu(q, p, alternative="two-sided", method="asymptotic").statistic
    expected = (u - 17 * 23 / 2) / np.sqrt(17 * 23 * (17 + 23 + 1) / 12)
    assert M.mann_whitney_z(q, p) == pytest.approx(expected)


def test_calibration_is_a_low_percentile_not_the_minimum() -> None:
    d = np.concatenate([[0.0], np.linspace(1.0, 2.0, 99)])  # one duplicate at 0
    threshold = M.calibrate_threshold(d, percentile=5)
    assert threshold == pytest.approx(np.percentile(d[1:], 5))
    assert threshold > d[1] > 0


CENTRES = RNG.random((10, 1, 6, 6))


def _draw(n: int) -> np.ndarray:
    """Images from one fixed distribution: 10 prototypes plus noise."""
    noise = RNG.normal(0, 0.15, (n, *CENTRES.shape[1:]))
    return np.clip(CENTRES[RNG.integers(0, 10, n)] + noise, 0, 1)


def _sets(n_train: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A training and a held-out set drawn from the same distribution."""
    return _draw(n_train), _draw(n_train // 2)


def test_copies_are_flagged_and_fresh_samples_are_not() -> None:
    train, heldout = _sets()
    copies = np.clip(train[:100] + RNG.normal(0, 0.005, train[:100].shape), 0, 1)
    copying = M.memorization(copies, train, heldout)
    assert copying.pixel.near_copy_fraction == 1.0
    assert copying.pixel.ct is not None and copying.pixel.ct < M.CT_COPYING
    assert copying.verdict()[0] == "possible copying"

    fresh = _draw(100)  # new draws from the same distribution
    clean = M.memorization(fresh, train, heldout)
    assert clean.pixel.near_copy_fraction is not None and clean.pixel.near_copy_fraction < 0.15
    assert clean.pixel.ct is not None and abs(clean.pixel.ct) < 3
    assert clean.verdict()[0] == "ok"


def test_ct_matches_a_direct_computation() -> None:
    """C_T recomputed by hand from the same k-means cells with scipy's Mann-Whitney U."""
    from scipy.spatial import cKDTree
    from scipy.stats import mannwhitneyu
    from sklearn.cluster import KMeans

    train, heldout = _sets()
    synthetic = _sets()[0][:120]
    test = M.data_copying_test(synthetic, train, heldout, n_cells=3, min_cell_samples=5, seed=1)
    flat = [x.reshape(len(x), -1) for x in (synthetic, train, heldout)]
    km = KMeans(n_clusters=3, n_init=1, random_state=1).fit(flat[1].astype(np.float32))
    cells = [km.predict(x.astype(np.float32)) for x in flat]
    zs, weights = [], []
    for c in range(3):
        q, t, p = (x[cell == c] for x, cell in zip(flat, cells, strict=True))
        if len(q) < 5 or len(p) == 0:
            continue
        tree = cKDTree(t)
        dq, dp = tree.query(q)[0], tree.query(p)[0]
        u = mannwhitneyu(dq, dp).statistic
        zs.append((u - len(q) * len(p) / 2) / np.sqrt(len(q) * len(p) * (len(q) + len(p) + 1) / 12))
        weights.append(len(p) / len(flat[2]))
    assert test.ct == pytest.approx(np.dot(weights, zs) / np.sum(weights))


def test_feature_space_and_closest_pairs() -> None:
    train, heldout = _sets()
    synthetic = train[:5] + 0.001
    f = [x.reshape(len(x), -1)[:, :8] for x in (synthetic, train, heldout)]
    result = M.memorization(synthetic, train, heldout, features=(f[0], f[1], f[2]))
    assert result.feature is not None and result.feature.near_copy_fraction == 1.0
    pairs = result.pixel.closest_pairs(3)
    assert [j for _, j, _ in pairs] == [i for i, _, _ in pairs]  # each copy finds its original
    summary = result.pixel.summary(3)
    assert summary["n_near_copies"] == 5 and len(summary["closest_pairs"]) == 3


def test_duplicates_between_and_within_sets() -> None:
    a, b = RNG.random((30, 1, 4, 4)), RNG.random((40, 1, 4, 4))
    a[4], b[9] = b[17], b[31]
    assert M.find_duplicates(a, b) == [(4, 17, 0.0)]
    assert M.find_duplicates(b) == [(9, 31, 0.0)]
    result = M.memorization(RNG.random((5, 1, 4, 4)), b, a)
    assert result.heldout_train_duplicates == [(4, 17, 0.0)]
    assert result.train_duplicates == [(9, 31, 0.0)]


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ConfigError, match="synthetic"):
        M.memorization(np.zeros((3, 1, 4, 4)), np.zeros((3, 1, 5, 5)))


def test_breastmnist_test_76_duplicates_train_115(shared_data: Path) -> None:
    from medisynth.data.io import read_medmnist

    path = shared_data / "breastmnist" / "breastmnist.npz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    data = read_medmnist(path)
    test, train = data.images["test"] / 255.0, data.images["train"] / 255.0
    pairs = M.find_duplicates(test, train)
    assert (76, 115, 0.0) in pairs
    np.testing.assert_array_equal(test[76], train[115])  # pixel-identical, independently checked
