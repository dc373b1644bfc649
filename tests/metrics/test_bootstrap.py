"""Bootstrap intervals: the generic helper against normal theory, and the metric-specific ones
(half-sampled FID, near-copy fraction, seed-averaged AUC; PRDC's are in test_prdc.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medisynth.errors import ConfigError
from medisynth.metrics import bootstrap as B
from medisynth.metrics import frechet
from medisynth.metrics.memorization import SpaceResult
from medisynth.metrics.utility import multiclass_auc, seed_averaged_auc_ci


def _mean_ci(x: np.ndarray, **kw: object) -> dict:
    ci = B.bootstrap_ci(lambda i: x[i].mean(), len(x), **kw)  # type: ignore[arg-type]
    assert ci is not None
    return ci


def _width(ci: dict) -> float:
    return ci[B.CI_HIGH] - ci[B.CI_LOW]


# --------------------------------------------------------------------------- the generic helper
def test_interval_contains_the_point_estimate_on_normal_data() -> None:
    for seed in range(5):
        x = np.random.default_rng(seed).normal(size=300)
        ci = _mean_ci(x, seed=seed)
        assert ci[B.CI_LOW] < x.mean() < ci[B.CI_HIGH]
        assert ci[B.N_RESAMPLES] == B.RESAMPLES and ci[B.LEVEL] == 0.95


def test_width_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small, large = _width(_mean_ci(rng.normal(size=100))), _width(_mean_ci(rng.normal(size=1000)))
    assert large < small / 2  # sqrt(10) = 3.2 expected


@pytest.mark.parametrize("half_sampling", [False, True])
def test_width_of_the_mean_matches_normal_theory(half_sampling: bool) -> None:
    # the 95% interval of the mean of n N(0, 1) samples: 2 x 1.96 / sqrt(n) wide
    n = 1000
    expected = 2 * 1.96 / np.sqrt(n)
    for seed in range(3):
        x = np.random.default_rng(seed).normal(size=n)
        ci = _mean_ci(x, n_resamples=2000, seed=seed, half_sampling=half_sampling)
        assert _width(ci) == pytest.approx(expected, rel=0.15)


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    x = np.random.default_rng(2).normal(size=200)
    assert _mean_ci(x, seed=3) == _mean_ci(x, seed=3)
    assert _mean_ci(x, seed=3) != _mean_ci(x, seed=4)


def test_zero_resamples_disable_and_bad_arguments_are_refused() -> None:
    x = np.zeros(10)
    assert B.bootstrap_ci(lambda i: x[i].mean(), 10, n_resamples=0) is None
    assert B.bootstrap_cis(lambda i: {"m": x[i].mean()}, 10, n_resamples=0) is None
    with pytest.raises(ConfigError, match=">= 0"):
        B.bootstrap_ci(lambda i: x[i].mean(), 10, n_resamples=-1)
    with pytest.raises(ConfigError, match="level"):
        B.bootstrap_ci(lambda i: x[i].mean(), 10, level=95)


def test_half_sampling_draws_half_without_replacement() -> None:
    drawn: list[np.ndarray] = []
    B.bootstrap_ci(lambda i: drawn.append(i) or 0.0, 11, n_resamples=5, half_sampling=True)
    assert all(len(i) == len(set(i.tolist())) == 5 for i in drawn)
    B.bootstrap_ci(lambda i: drawn.append(i) or 0.0, 11, n_resamples=5)
    assert all(len(i) == 11 for i in drawn[5:]) and any(len(set(i)) < 11 for i in drawn[5:])


def test_strata_keep_group_sizes_and_non_finite_resamples_are_dropped() -> None:
    groups = np.r_[np.zeros(5, int), np.ones(45, int)]
    seen: list[int] = []

    def positives(i: np.ndarray) -> float:
        seen.append(int(groups[i].sum()))
        return float("nan") if len(seen) % 2 else 1.0

    ci = B.bootstrap_ci(positives, 50, n_resamples=20, strata=[groups])
    assert set(seen) == {45}
    assert ci is not None and ci[B.N_RESAMPLES] == 10


def test_bias_correction_shifts_to_the_estimate() -> None:
    x = np.random.default_rng(5).normal(size=200)
    plain = _mean_ci(x, seed=0)
    shifted = _mean_ci(x, seed=0, estimate=x.mean() + 1.0)
    assert shifted[B.CI_LOW] == pytest.approx(plain[B.CI_LOW] + 1.0, abs=0.02)
    assert _width(shifted) == pytest.approx(_width(plain))


# --------------------------------------------------------------------------- FID
@pytest.mark.parametrize("m", [60, 300])  # half-samples of 30 < 40 features (Gram), 150 > 40
def test_fid_resample_statistic_is_fid_of_the_resample(
    m: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(200, 40)), rng.normal(size=(m, 40)) + 0.3
    captured = {}

    def capture(statistic, size, **kw):  # type: ignore[no-untyped-def]
        captured["statistic"], captured["kw"] = statistic, kw
        return None

    monkeypatch.setattr(B, "bootstrap_ci", capture)
    frechet.fid_bootstrap(real, fake, n_resamples=3)
    statistic = captured["statistic"]
    assert captured["kw"]["half_sampling"] is True
    assert captured["kw"]["estimate"] == pytest.approx(frechet.fid(real, fake), rel=1e-9)
    half = np.sort(rng.choice(m, m // 2, replace=False))
    # (rel 1e-6: fid's F x F route sums square roots of ~1e-15 rounding in the zero eigenvalues)
    assert statistic(half) == pytest.approx(frechet.fid(real, fake[half]), rel=1e-6)


def test_fid_interval_contains_fid_and_tracks_the_spread_over_fresh_sets() -> None:
    rng = np.random.default_rng(10)
    real = rng.normal(size=(600, 40))
    fresh = lambda: rng.normal(size=(300, 40)) * 1.1 + 0.05  # noqa: E731
    fake = fresh()
    ci = frechet.fid_bootstrap(real, fake, n_resamples=200, seed=0)
    assert ci is not None and ci[B.CI_LOW] < frechet.fid(real, fake) < ci[B.CI_HIGH]
    spread = 2 * 1.96 * np.std([frechet.fid(real, fresh()) for _ in range(60)])
    assert 0.7 < _width(ci) / spread < 2.0  # measured: 1.4 (with replacement it is 8x at F > m)
    assert frechet.fid_bootstrap(real, fake, n_resamples=0) is None


# --------------------------------------------------------------------------- near-copies, AUC
def test_near_copy_interval_is_wilson_against_the_fixed_threshold() -> None:
    distances = np.r_[np.full(30, 0.1), np.full(170, 1.0)]  # 15% below the threshold 0.5
    space = SpaceResult("pixels", distances, np.zeros(200, int), None, 0.5, 5.0, 0.15)
    ci = space.near_copy_ci(seed=0)
    assert ci is not None and ci[B.CI_LOW] < 0.15 < ci[B.CI_HIGH]
    assert ci[B.CI_LOW] > 0.08 and ci[B.CI_HIGH] < 0.22  # +-1.96 x sqrt(.15 x .85 / 200) = 0.05
    assert space.near_copy_ci(0) is None
    space.threshold = None
    assert space.near_copy_ci() is None


def test_no_near_copy_gives_an_interval_above_zero_equal_to_statsmodels() -> None:
    from statsmodels.stats.proportion import proportion_confint

    for below, n in ((0, 546), (3, 200)):
        distances = np.r_[np.full(below, 0.1), np.full(n - below, 1.0)]
        space = SpaceResult("pixels", distances, np.zeros(n, int), None, 0.5, 5.0, below / n)
        ci = space.near_copy_ci()
        assert ci is not None
        low, high = proportion_confint(below, n, alpha=0.05, method="wilson")
        assert ci[B.CI_LOW] == pytest.approx(low, abs=1e-12)
        assert ci[B.CI_HIGH] == pytest.approx(high, abs=1e-12) and ci[B.CI_HIGH] > 0


def test_seed_averaged_auc_interval() -> None:
    rng = np.random.default_rng(11)
    labels = np.r_[np.zeros(80, int), np.ones(20, int)]
    probabilities = []
    for _ in range(3):
        p = np.clip(rng.random(100) * 0.7 + 0.3 * labels, 0, 1)
        probabilities.append(np.c_[1 - p, p])
    mean_auc = np.mean([multiclass_auc(labels, p) for p in probabilities])
    ci = seed_averaged_auc_ci(labels, probabilities, n_resamples=300, seed=0)
    assert ci is not None and ci[B.CI_LOW] < mean_auc < ci[B.CI_HIGH]
    assert seed_averaged_auc_ci(labels, probabilities, n_resamples=0) is None
    # 2 positives in 40: unstratified, 1 resample in 8 would hold none (AUC undefined, dropped)
    rare = np.r_[np.zeros(38, int), np.ones(2, int)]
    p = rng.random(40)
    ci = seed_averaged_auc_ci(rare, [np.c_[1 - p, p]], n_resamples=300, seed=0)
    assert ci is not None and ci[B.N_RESAMPLES] == 300
