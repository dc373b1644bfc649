"""Paired comparison of two training conditions on the same real test images.

Does adding synthetic images to classically augmented real data give a better classifier or
segmenter than the classic augmentation alone? Both conditions are scored on the *same* test
images, so their scores are paired by image: :func:`paired_auc_difference` (classification) and
:func:`paired_mean_difference` (per-image scores such as Dice) resample the test images with
replacement (``scipy.stats.bootstrap`` with ``paired=True``: one index draw moves every
condition's prediction for an image together) and report

- the difference of the two conditions' scores on the full test set,
- its percentile-bootstrap interval (``1 - level`` split over the two tails),
- a two-sided bootstrap p-value: twice the smaller of the fractions of resampled differences at or
  below 0 and at or above 0, each counted as ``(count + 1) / (resamples + 1)``; it is the
  smallest level at which the percentile interval leaves out 0, so ``p < 0.05`` goes with a 95%
  interval that excludes 0.

**Several seeds.** Each condition is trained with several seeds (and, in the utility curve, several
GANs). The statistic is the mean over models of the paired per-model difference (model ``m`` of
condition A against model ``m`` of condition B), recomputed on every resample from the resampled
test predictions of all models at once. We use this "per seed, then average" form rather than
scoring seed-averaged probabilities because it is exactly the difference of the mean AUCs (or Dice)
that the report tabulates per condition, and an ensemble of the seeds' probabilities is a different,
usually better, classifier than the ones reported. The interval covers the test-set sampling
variability of that mean difference; training variability is averaged over the models but not part
of the interval (the spread over seeds is reported beside it).

Resamples on which a score is undefined (an AUC of a resample that lacks a class) are left out of
the interval and the p-value; ``n_resamples`` counts those used.

>>> rng = np.random.default_rng(0)
>>> y = np.r_[np.zeros(50, int), np.ones(50, int)]
>>> a = rng.normal(size=100) + 1.5 * y           # the better classifier
>>> b = rng.normal(size=100) + 0.5 * y
>>> result = paired_auc_difference(y, a[None], b[None], n_resamples=999, seed=0)
>>> bool(result.ci_low > 0), result.p_value < 0.05
(True, True)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medisynth.errors import ConfigError

#: array elements per batch of resamples (bounds the memory of the vectorised statistic)
_BATCH_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class PairedDifference:
    """A paired difference A - B with its bootstrap interval and p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_test: int
    n_models: int
    n_resamples: int
    level: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the interval as ``difference_ci: [low, high]``."""
        out = asdict(self)
        out["difference_ci"] = [out.pop("ci_low"), out.pop("ci_high")]
        return out

    def excludes_zero(self) -> int:
        """+1 when the interval lies above 0, -1 below 0, 0 when it holds 0."""
        return 1 if self.ci_low > 0 else -1 if self.ci_high < 0 else 0


def resample_counts(index: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` items appears in each resample: ``(..., n)`` indices -> counts.

    >>> resample_counts(np.array([[0, 0, 2], [1, 2, 2]]), 3).tolist()
    [[2.0, 0.0, 1.0], [0.0, 1.0, 2.0]]
    """
    flat = np.asarray(index).reshape(-1, n)
    offsets = (np.arange(len(flat)) * n)[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.size)
    return counts.reshape(np.shape(index)).astype(np.float64)


def weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of ``scores`` ``(n,)`` for the classes ``positive`` ``(n,)``, each item counted
    ``weights`` ``(B, n)`` times (a bootstrap resample); ties count 1/2; ``nan`` where a class
    has no weight. One sort of the scores serves every resample: O(B n).

    >>> y, s = np.array([0, 0, 1, 1]) == 1, np.array([0.1, 0.4, 0.35, 0.8])
    >>> weighted_auc(y, s, np.array([[1, 1, 1, 1], [2, 0, 1, 1]]))
    array([0.75, 1.  ])
    """
    order = np.argsort(scores, kind="stable")
    ordered = np.asarray(scores)[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # tie groups
    pos = np.asarray(positive, bool)[order]
    w = np.asarray(weights, np.float64)[..., order]
    w_pos = np.add.reduceat(w * pos, starts, axis=-1)
    w_neg = np.add.reduceat(w * ~pos, starts, axis=-1)
    below = np.cumsum(w_neg, axis=-1) - w_neg  # negatives scored lower than each tie group
    n_pos, n_neg = w_pos.sum(-1), w_neg.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (w_pos * (below + 0.5 * w_neg)).sum(-1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _class_scores(probabilities: np.ndarray, what: str) -> np.ndarray:
    """``(M, n, K)`` probabilities -> ``(M, K', n)`` scores: class 1 alone for two classes (as
    :func:`~medisynth.metrics.utility.multiclass_auc`), every class otherwise."""
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 3 or p.shape[2] < 2:
        raise ConfigError(f"{what}: need probabilities (models, images, classes), got {p.shape}")
    p = p[:, :, 1:2] if p.shape[2] == 2 else p
    return np.moveaxis(p, 2, 1)


def _mean_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over models of the (one-vs-rest mean) AUC under resample ``weights`` ``(B, n)``;
    ``scores`` ``(M, K', n)`` -> ``(B,)``."""
    classes = [1] if scores.shape[1] == 1 else range(scores.shape[1])
    auc = np.array(
        [[weighted_auc(labels == c, s, weights) for c, s in zip(classes, m, strict=True)]
         for m in scores]
    )  # (M, K', B)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan: a resample lacking a class
        per_model = np.nanmean(auc, axis=1) if auc.shape[1] > 1 else auc[:, 0]
    return per_model.mean(axis=0)


def paired_auc_difference(
    labels: np.ndarray,
    probabilities_a: np.ndarray,
    probabilities_b: np.ndarray,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Mean over models of AUC(A) - AUC(B) on the same test images, with a paired bootstrap.

    Args:
        labels: test labels ``(n,)``.
        probabilities_a, probabilities_b: ``(M, n, K)`` class probabilities of M models each
            (model m of A is paired with model m of B), or ``(M, n)`` positive-class scores.
        n_resamples, level, seed: of the bootstrap.

    The AUC is that of :func:`~medisynth.metrics.utility.multiclass_auc`: on class 1 for two
    classes, else the mean one-vs-rest AUC over classes.
    """
    labels = np.asarray(labels).ravel().astype(np.int64)
    a, b = (np.asarray(p, np.float64) for p in (probabilities_a, probabilities_b))
    if a.ndim == 2:  # positive-class scores
        a, b = (np.stack([1 - x, x], axis=-1) for x in (a, b))
    if a.shape != b.shape or a.shape[1] != len(labels):
        raise ConfigError(
            f"paired comparison: {len(labels)} labels, probabilities {a.shape} and {b.shape}; "
            "need the same models x images (x classes) for both conditions"
        )
    sa, sb = _class_scores(a, "condition A"), _class_scores(b, "condition B")

    def statistic(weights: np.ndarray) -> np.ndarray:
        return _mean_auc(labels, sa, weights) - _mean_auc(labels, sb, weights)

    return _paired_bootstrap(statistic, len(labels), len(a), n_resamples, level, seed, "AUC")


def paired_mean_difference(
    values_a: np.ndarray,
    values_b: np.ndarray,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Mean over models and test images of A - B for per-image scores (e.g. Dice), ``(M, n)``
    each (model m of A paired with model m of B), with a paired bootstrap over the images."""
    a, b = (np.atleast_2d(np.asarray(v, np.float64)) for v in (values_a, values_b))
    if a.shape != b.shape:
        raise ConfigError(f"paired comparison: scores {a.shape} and {b.shape} differ in shape")
    per_image = (a - b).mean(axis=0)

    def statistic(weights: np.ndarray) -> np.ndarray:
        return np.asarray(weights @ per_image / weights.sum(-1))

    return _paired_bootstrap(statistic, a.shape[1], len(a), n_resamples, level, seed, "mean")


def _paired_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    n_models: int,
    n_resamples: int,
    level: float,
    seed: int,
    what: str,
) -> PairedDifference:
    """``scipy.stats.bootstrap`` of the test images (``paired=True``: an image's predictions
    under every model and condition move together) -> the percentile interval over the
    resamples where the statistic is defined, and the two-sided percentile p-value.

    ``statistic`` maps resample weights ``(B, n)`` (how often each test image was drawn) to
    ``(B,)`` values: scipy hands it the resampled image indices, which become counts."""
    from scipy.stats import bootstrap

    if n_resamples < 1 or not 0 < level < 1:
        raise ConfigError(
            f"paired bootstrap: need resamples >= 1 and 0 < level < 1, got {n_resamples}, {level}"
        )
    if n < 2:
        raise ConfigError(f"paired comparison: need at least 2 test images, got {n}")
    estimate = float(statistic(np.ones((1, n)))[0])

    def on_indices(index: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(resample_counts(index, n).reshape(-1, n)).reshape(index.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns of a nan interval; we drop nan resamples
        result = bootstrap(
            (np.arange(n),), on_indices, n_resamples=n_resamples, paired=True,
            vectorized=True, confidence_level=level, method="percentile",
            rng=np.random.default_rng(seed),
            batch=max(1, _BATCH_ELEMENTS // (n * max(1, n_models))),
        )  # fmt: skip
    values = np.asarray(result.bootstrap_distribution, np.float64)
    kept = values[np.isfinite(values)]
    if len(kept) < 2 or not np.isfinite(estimate):
        raise ConfigError(
            f"paired comparison of {what}: undefined on the test set or on almost every "
            f"resample ({n} test images); a test set with every class present is needed"
        )
    tail = 100 * (1 - level) / 2
    low, high = (float(v) for v in np.percentile(kept, [tail, 100 - tail]))
    return PairedDifference(
        difference=estimate,
        ci_low=low,
        ci_high=high,
        p_value=two_sided_p(kept),
        n_test=n,
        n_models=n_models,
        n_resamples=len(kept),
        level=level,
        method=f"paired percentile bootstrap over test images (scipy.stats.bootstrap), {what} "
        "difference averaged over paired models; two-sided p from the bootstrap distribution",
    )


def two_sided_p(differences: np.ndarray) -> float:
    """Twice the smaller tail of resampled differences beyond 0, each ``(count + 1) / (B + 1)``.

    >>> two_sided_p(np.array([0.1, 0.2, 0.3, -0.1]))
    0.8
    """
    d = np.asarray(differences, np.float64)
    below = (np.count_nonzero(d <= 0) + 1) / (len(d) + 1)
    above = (np.count_nonzero(d >= 0) + 1) / (len(d) + 1)
    return float(min(1.0, 2 * min(below, above)))


def gain_verdict(result: PairedDifference, metric: str, gain: str, baseline: str) -> str:
    """One line: whether condition A added value beyond B (the interval decides, p beside it).

    >>> r = PairedDifference(0.02, 0.005, 0.04, 0.01, 156, 3, 2000, 0.95, "")
    >>> gain_verdict(r, "AUC", "GANs", "flips")
    'GANs added value beyond flips: AUC +0.020 [95% CI +0.005, +0.040], p = 0.010'
    """
    sign = result.excludes_zero()
    head = (
        f"{gain} added value beyond {baseline}"
        if sign > 0
        else f"{gain} did worse than {baseline} alone"
        if sign < 0
        else f"no evidence that {gain} added value beyond {baseline}"
    )
    return (
        f"{head}: {metric} {result.difference:+.3f} [{result.level:.0%} CI {result.ci_low:+.3f}, "
        f"{result.ci_high:+.3f}], p = {result.p_value:.3f}"
    )
