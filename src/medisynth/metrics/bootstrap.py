"""Percentile-bootstrap confidence intervals for metrics that are cheap to recompute.

A statistic is recomputed on resamples drawn *with replacement* from one or more sets (for a
two-sample metric such as precision, each set is resampled independently, keeping its size); the
interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the resampled values
(the plain percentile bootstrap, Efron 1979). ``strata`` resample within groups (e.g. the two
classes of a test set for an AUC, which keeps both classes present; the "stratified" bootstrap
of pROC). Resamples whose statistic is not finite are left out; ``n_resamples`` in the result
counts those used.

A statistic that is biased in the number of *distinct* samples (a resample holds about 63% of
them), such as the Fréchet distance, sits higher on resamples than on the full set. Given the
full-set ``estimate``, the interval is then shifted by the bootstrap's bias estimate (mean of
the resampled values minus ``estimate``): the bias-corrected percentile interval.

``half_sampling`` draws half of each set *without* replacement instead (no repeats): for a mean,
the variance of a half-sample mean equals that of the full-set mean (the finite-population
factor ``1 - 1/2`` cancels the halved size), so no rescaling is needed. It suits statistics that
repeats distort, such as covariance-based distances with fewer samples than features.

The statistic receives one index array per set, so a metric built on precomputed arrays can
index them instead of recomputing features. Neither scheme suits k-NN statistics such as
precision/recall, whose radii move with the resampled set: their intervals hold that set fixed
(:meth:`medisynth.metrics.prdc.PRDCTerms.intervals`).

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=400)
>>> ci = bootstrap_ci(lambda i: x[i].mean(), len(x), n_resamples=500, seed=0)
>>> bool(ci["ci_low"] < x.mean() < ci["ci_high"]), ci["n_resamples"], ci["level"]
(True, 500, 0.95)
>>> bootstrap_ci(lambda i: x[i].mean(), len(x), n_resamples=0) is None   # 0 disables
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from medisynth.errors import ConfigError

CI_LOW = "ci_low"
CI_HIGH = "ci_high"
N_RESAMPLES = "n_resamples"
LEVEL = "level"
#: the suffix of a value's interval in a report (``"precision"`` -> ``"precision_ci"``)
CI_SUFFIX = "_ci"
#: default number of resamples and confidence level
RESAMPLES = 200
CONFIDENCE = 0.95


def ci_key(name: str) -> str:
    """The report key of ``name``'s interval.

    >>> ci_key("precision")
    'precision_ci'
    """
    return f"{name}{CI_SUFFIX}"


def interval(ci: Mapping[str, Any] | None) -> list[float] | None:
    """``[ci_low, ci_high]`` of a bootstrap result (``None`` stays ``None``).

    >>> interval({"ci_low": 0.1, "ci_high": 0.3, "n_resamples": 9, "level": 0.95})
    [0.1, 0.3]
    """
    return None if ci is None else [float(ci[CI_LOW]), float(ci[CI_HIGH])]


def percentile_interval(
    values: np.ndarray, level: float = CONFIDENCE, estimate: float | None = None
) -> dict[str, Any]:
    """The percentile interval of resampled ``values`` (non-finite ones left out); shifted by
    ``mean(values) - estimate`` when the full-set ``estimate`` is given.

    >>> percentile_interval(np.arange(101.0), 0.9)
    {'ci_low': 5.0, 'ci_high': 95.0, 'n_resamples': 101, 'level': 0.9}
    >>> percentile_interval(np.arange(101.0), 0.9, estimate=40.0)["ci_low"]
    -5.0
    """
    values = np.asarray(values, np.float64).ravel()
    kept = values[np.isfinite(values)]
    if len(kept) < 2:
        low = high = float("nan")
    else:
        tail = round((1.0 - level) * 50.0, 10)  # percent in each tail
        low, high = (float(v) for v in np.percentile(kept, [tail, 100.0 - tail]))
        if estimate is not None:
            bias = float(kept.mean()) - estimate
            low, high = low - bias, high - bias
    return {CI_LOW: low, CI_HIGH: high, N_RESAMPLES: len(kept), LEVEL: level}


def _resample(
    size: int, groups: np.ndarray | None, rng: np.random.Generator, half: bool
) -> np.ndarray:
    def draw(members: np.ndarray) -> np.ndarray:
        if half:
            return rng.choice(members, max(1, len(members) // 2), replace=False)
        return members[rng.integers(0, len(members), len(members))]

    if groups is None:
        return draw(np.arange(size))
    parts = [draw(np.flatnonzero(groups == g)) for g in np.unique(groups)]
    return np.sort(np.concatenate(parts))


def check_interval_settings(n_resamples: int, level: float) -> None:
    """ConfigError unless ``n_resamples >= 0`` (0: no intervals) and ``0 < level < 1``."""
    if n_resamples < 0:
        raise ConfigError(f"bootstrap resamples must be >= 0 (0 disables), got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level must be in (0, 1), got {level}")


def bootstrap_cis(
    statistic: Callable[..., Mapping[str, float]],
    sizes: int | Sequence[int],
    *,
    n_resamples: int = RESAMPLES,
    level: float = CONFIDENCE,
    seed: int | np.random.Generator = 0,
    strata: Sequence[np.ndarray | None] | None = None,
    estimates: Mapping[str, float] | None = None,
    half_sampling: bool = False,
) -> dict[str, dict[str, Any]] | None:
    """Percentile intervals of several statistics computed together on each resample.

    Args:
        statistic: called with one index array per set (``len(sizes)`` arrays, each as long
            as its set, drawn with replacement; half as long with ``half_sampling``);
            returns ``{name: value}``.
        sizes: the size of each set (an int for one set).
        n_resamples: resamples; 0 disables the bootstrap (returns ``None``).
        level: the confidence level (0.95: the 2.5th and 97.5th percentiles).
        seed: seed (or generator) of the resampling; the same seed gives the same intervals.
        strata: per set, ``None`` or group labels: resample within each group.
        estimates: full-set values of statistics to bias-correct (see the module doc).
        half_sampling: draw half of each set without replacement (see the module doc).

    Returns:
        ``{name: {"ci_low", "ci_high", "n_resamples", "level"}}``, or ``None`` when disabled.

    >>> x = np.arange(10.0)
    >>> cis = bootstrap_cis(lambda i: {"min": x[i].min(), "max": x[i].max()}, 10, n_resamples=50)
    >>> cis["min"]["ci_low"], cis["max"]["ci_high"]
    (0.0, 9.0)
    """
    check_interval_settings(n_resamples, level)
    if n_resamples == 0:
        return None
    sizes = [sizes] if isinstance(sizes, int) else list(sizes)
    if any(n < 1 for n in sizes):
        raise ConfigError(f"bootstrap needs non-empty sets, got sizes {sizes}")
    groups = list(strata) if strata is not None else [None] * len(sizes)
    if len(groups) != len(sizes):
        raise ConfigError(f"{len(groups)} strata for {len(sizes)} sets")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        indices = [_resample(n, g, rng, half_sampling) for n, g in zip(sizes, groups, strict=True)]
        for name, value in statistic(*indices).items():
            draws.setdefault(name, []).append(float(value))
    estimates = estimates or {}
    return {
        name: percentile_interval(np.array(v), level, estimates.get(name))
        for name, v in draws.items()
    }


def bootstrap_ci(
    statistic: Callable[..., float],
    sizes: int | Sequence[int],
    *,
    n_resamples: int = RESAMPLES,
    level: float = CONFIDENCE,
    seed: int | np.random.Generator = 0,
    strata: Sequence[np.ndarray | None] | None = None,
    estimate: float | None = None,
    half_sampling: bool = False,
) -> dict[str, Any] | None:
    """Percentile interval of one statistic; see :func:`bootstrap_cis` for the arguments.

    >>> y = np.r_[np.zeros(50), np.ones(50)]
    >>> ci = bootstrap_ci(lambda i: y[i].mean(), 100, n_resamples=100, strata=[y])
    >>> ci["ci_low"] == ci["ci_high"] == 0.5   # class counts are kept within strata
    True
    """
    result = bootstrap_cis(
        lambda *idx: {"value": statistic(*idx)},
        sizes,
        n_resamples=n_resamples,
        level=level,
        seed=seed,
        strata=strata,
        estimates=None if estimate is None else {"value": estimate},
        half_sampling=half_sampling,
    )
    return None if result is None else result["value"]


def wilson_interval(hits: np.ndarray, level: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) of the fraction of ``True`` in ``hits``: unlike a
    bootstrap it is not ``[0, 0]`` when no hit was seen.

    >>> low, high = wilson_interval(np.zeros(100, bool))
    >>> low, round(high, 4)
    (0.0, 0.037)
    """
    ci = stats.binomtest(int(np.sum(hits)), len(hits)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)
