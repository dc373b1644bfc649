"""Paired bootstrap of AUC / Dice differences: against a slow explicit reference, and coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from medisynth.errors import ConfigError
from medisynth.metrics import comparison as C
from medisynth.metrics.utility import multiclass_auc


def _slow_reference(
    y: np.ndarray, pa: np.ndarray, pb: np.ndarray, n_resamples: int, seed: int, level: float
) -> tuple[float, float, float, float]:
    """Difference, percentile interval and two-sided p, one resample at a time, drawing the
    resampled indices as scipy.stats.bootstrap does (one (B, n) draw from the same generator)."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(y), (n_resamples, len(y)))

    def diff(i: np.ndarray) -> float:
        a = np.mean([multiclass_auc(y[i], p[i]) for p in pa])
        b = np.mean([multiclass_auc(y[i], p[i]) for p in pb])
        return float(a - b)

    values = np.array([diff(i) for i in index])
    kept = values[np.isfinite(values)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(kept, [tail, 100 - tail])
    below = (sum(1 for v in kept if v <= 0) + 1) / (len(kept) + 1)
    above = (sum(1 for v in kept if v >= 0) + 1) / (len(kept) + 1)
    return diff(np.arange(len(y))), float(low), float(high), min(1.0, 2 * min(below, above))


def _probabilities(rng: np.random.Generator, y: np.ndarray, k: int, signal: float) -> np.ndarray:
    logits = rng.normal(size=(len(y), k)) + signal * np.eye(k)[y]
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize(("k", "models"), [(2, 1), (2, 3), (3, 2)])
def test_paired_auc_difference_equals_a_slow_reference(k: int, models: int) -> None:
    rng = np.random.default_rng(k * 10 + models)
    y = rng.integers(0, k, 40)
    y[:k] = np.arange(k)  # every class present
    pa = np.stack([_probabilities(rng, y, k, 1.5) for _ in range(models)])
    pb = np.stack([_probabilities(rng, y, k, 0.8) for _ in range(models)])
    result = C.paired_auc_difference(y, pa, pb, n_resamples=300, seed=7, level=0.9)
    difference, low, high, p = _slow_reference(y, pa, pb, 300, 7, 0.9)
    assert result.difference == pytest.approx(difference, abs=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert result.p_value == pytest.approx(p, abs=1e-12)
    assert result.n_models == models and result.n_test == 40 and result.n_resamples == 300


def test_the_interval_is_scipys_percentile_interval() -> None:
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(30, int), np.ones(30, int)]
    a, b = rng.normal(size=60) + y, rng.normal(size=60) + 0.5 * y
    result = C.paired_auc_difference(y, a[None], b[None], n_resamples=500, seed=3)

    def statistic(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return multiclass_auc(y, np.c_[1 - a, a]) - multiclass_auc(y, np.c_[1 - b, b])

    scipy = bootstrap((y, a, b), statistic, paired=True, n_resamples=500, method="percentile",
                      rng=np.random.default_rng(3), vectorized=False)  # fmt: skip
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(scipy.confidence_interval))


def test_weighted_auc_equals_the_auc_of_the_repeated_items() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    y, s = rng.integers(0, 2, 30) == 1, np.round(rng.random(30), 1)  # ties
    index = rng.integers(0, 30, (5, 30))
    auc = C.weighted_auc(y, s, C.resample_counts(index, 30))
    expected = [roc_auc_score(y[i], s[i]) for i in index]
    np.testing.assert_allclose(auc, expected, rtol=0, atol=1e-12)
    assert np.isnan(C.weighted_auc(y, s, (~y)[None].astype(float)))[0]  # no positives drawn


def test_paired_mean_difference_equals_a_slow_reference() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random((3, 25)), rng.random((3, 25)) * 0.9
    result = C.paired_mean_difference(a, b, n_resamples=200, seed=4)
    index = np.random.default_rng(4).integers(0, 25, (200, 25))
    values = np.array([(a[:, i] - b[:, i]).mean() for i in index])
    assert result.difference == pytest.approx((a - b).mean())
    expected = tuple(np.percentile(values, [2.5, 97.5]))
    assert (result.ci_low, result.ci_high) == pytest.approx(expected)
    assert result.p_value == pytest.approx(C.two_sided_p(values))


def test_identical_conditions_give_zero_and_p_one() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 30)
    p = rng.random((2, 30))
    result = C.paired_auc_difference(y, p, p.copy(), n_resamples=100)
    assert result.difference == 0 and result.ci_low == result.ci_high == 0 and result.p_value == 1
    assert "no evidence" in C.gain_verdict(result, "AUC", "GAN augmentation", "classic")


def test_interval_covers_a_known_auc_difference() -> None:
    """Scores N(delta * y, 1) have AUC Phi(delta / sqrt 2): the paired interval (correlated
    scores of two classifiers on the same images) should hold the true difference ~95% of the
    time."""
    rng = np.random.default_rng(11)
    deltas, rho, repeats = (1.4, 0.9), 0.5, 200
    truth = norm.cdf(deltas[0] / np.sqrt(2)) - norm.cdf(deltas[1] / np.sqrt(2))
    y = np.r_[np.zeros(50, int), np.ones(50, int)]
    covered, rejected = 0, 0
    for repeat in range(repeats):
        shared, own = rng.normal(size=100), rng.normal(size=100)
        a = deltas[0] * y + shared
        b = deltas[1] * y + rho * shared + np.sqrt(1 - rho**2) * own
        result = C.paired_auc_difference(y, a[None], b[None], n_resamples=400, seed=repeat)
        covered += result.ci_low <= truth <= result.ci_high
        rejected += result.p_value < 0.05
    assert 0.90 <= covered / repeats <= 0.99, covered
    assert rejected > repeats / 2  # a real difference of ~0.1 AUC is found most of the time


def test_refusals() -> None:
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ConfigError, match="same models"):
        C.paired_auc_difference(y, np.zeros((1, 4)), np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="every class"):
        C.paired_auc_difference(np.zeros(4, int), np.random.rand(1, 4), np.random.rand(1, 4))
    with pytest.raises(ConfigError, match="resamples"):
        C.paired_mean_difference(np.zeros((1, 4)), np.zeros((1, 4)), n_resamples=0)
