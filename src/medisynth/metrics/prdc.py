"""Fidelity and diversity: improved precision/recall, density/coverage, within-set NN distances.

- Precision and recall (Kynkäänniemi et al. 2019): each real (resp. synthetic) sample owns a ball
  reaching its ``k``-th nearest neighbour in its own set; precision is the fraction of synthetic
  samples inside some real ball, recall the fraction of real samples inside some synthetic ball.
- Density and coverage (Naeem et al. 2020): density counts real balls around each synthetic sample
  (divided by ``k``; about 1 for matching distributions, can exceed 1); coverage is the fraction of
  real samples whose ball holds at least one synthetic sample.

Ball membership is strict (``distance < radius``), as in the reference ``prdc`` package.

Intervals (:meth:`PRDCTerms.intervals`) hold fixed the set whose k-NN balls define a score:
resampling it, with or without replacement, moves its radii and so the score. Given the real set,
precision and density are means of i.i.d. terms over synthetic samples: Wilson interval (Wilson
1927; Brown, Cai & DasGupta 2001), BCa bootstrap (Efron 1987); recall: Wilson over real samples,
synthetic set fixed; coverage (a mean over real balls): normal, delete-one jackknife variance over
synthetic samples, conservative (Efron & Stein 1981). Target: the mean score over such redraws.

Mode collapse shows as low recall and coverage, and as a within-set nearest-neighbour distance
of the synthetic set far below that of real data. :func:`diversity_verdict` turns this into a
verdict with a documented rule.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(200, 4))
>>> scores = prdc(x, x, k=5)
>>> [scores[key] for key in ("precision", "recall", "coverage")]
[1.0, 1.0, 1.0]
>>> collapsed = prdc(x, np.repeat(x[:2], 25, axis=0), k=5)  # 2 distinct images
>>> collapsed["recall"] < 0.1 and collapsed["coverage"] < 0.1
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from medisynth.errors import ConfigError
from medisynth.metrics.bootstrap import (
    CI_HIGH,
    CI_LOW,
    CONFIDENCE,
    LEVEL,
    N_RESAMPLES,
    RESAMPLES,
    check_interval_settings,
    wilson_interval,
)
from medisynth.metrics.neighbors import BLOCK_BYTES, knn, kth_neighbour_radius, pairwise_distances

PRECISION = "precision"
RECALL = "recall"
DENSITY = "density"
COVERAGE = "coverage"
#: the key of an interval's method in :meth:`PRDCTerms.intervals`
METHOD = "method"

#: how each score's interval is made and what it holds fixed
INTERVAL_METHODS = {
    PRECISION: "Wilson score interval over the synthetic samples; real set fixed",
    RECALL: "Wilson score interval over the real samples; synthetic set fixed",
    DENSITY: "BCa bootstrap of the synthetic samples' real-ball counts; real set fixed",
    COVERAGE: "normal interval, delete-one jackknife variance over the synthetic samples "
    "(conservative); real set fixed",
}

#: what the intervals target (the report's ``bootstrap.method``)
INTERVAL_TARGET = (
    "each interval holds fixed the set whose k-NN balls define the score (precision, density, "
    "coverage: the real set; recall: the synthetic set) and targets the expected score over "
    "fresh draws of the other set at its size; n_resamples: density's bootstrap"
)

#: Synthetic within-set NN median below this fraction of the real one: "collapsed".
COLLAPSE_RATIO = 0.5
#: Synthetic within-set NN median below this fraction of the real one: "reduced diversity".
REDUCED_RATIO = 0.8
#: Recall or coverage below this: "reduced diversity" (at least).
LOW_RECALL = 0.2
#: values held at once by the density bootstrap (bounds its memory)
_BOOTSTRAP_VALUES = 2**22


@dataclass(frozen=True)
class PRDCTerms:
    """The per-sample terms of which each score is the mean (see :func:`prdc_terms`)."""

    k: int
    #: per synthetic sample: inside some real ball (precision)
    in_real_ball: np.ndarray
    #: per synthetic sample: the number of real balls holding it (density, divided by ``k``)
    real_balls: np.ndarray
    #: per real sample: inside some synthetic ball (recall)
    recalled: np.ndarray
    #: per real sample: its ball holds a synthetic sample (coverage)
    covered: np.ndarray
    #: per synthetic sample: the real balls it is the only synthetic sample of (coverage's
    #: delete-one jackknife: leaving the sample out uncovers them)
    sole_cover: np.ndarray

    def scores(self) -> dict[str, float]:
        """Precision, recall, density and coverage."""
        return {
            PRECISION: float(self.in_real_ball.mean()),
            RECALL: float(self.recalled.mean()),
            DENSITY: float(self.real_balls.mean() / self.k),
            COVERAGE: float(self.covered.mean()),
        }

    def intervals(
        self, n_resamples: int = RESAMPLES, level: float = CONFIDENCE, seed: int = 0
    ) -> dict[str, dict[str, Any]] | None:
        """Confidence intervals of the four scores, each given the set that defines its balls.

        The estimand, the other set as it is: precision, the synthetic distribution's mass in the
        union of the real balls; density, the sum of the real balls' synthetic masses over ``k``;
        coverage, the expected fraction of real balls that a fresh synthetic set of the same size
        reaches; recall, the real distribution's mass in the union of the synthetic balls.
        Coverage is not bootstrapped: a resample with replacement holds ~63% of the synthetic
        samples, so reaches fewer balls (biased low), and a smaller subsample likewise.

        Args:
            n_resamples: resamples of density's bootstrap (0: no intervals, returns ``None``).
            level: confidence level.
            seed: seed of the bootstrap.

        Returns:
            ``{name: {"ci_low", "ci_high", "n_resamples", "level", "method"}}``; each interval
            holds its score (a score at 0 gets ``[0, x]``; ``x`` is 0 where every term is 0
            and the terms say nothing of their spread, e.g. density or coverage 0).

        >>> rng = np.random.default_rng(0)
        >>> terms = prdc_terms(rng.normal(size=(150, 4)), rng.normal(size=(150, 4)) + 9)
        >>> terms.scores()["precision"], terms.intervals()["precision"]["ci_high"] > 0
        (0.0, True)
        """
        check_interval_settings(n_resamples, level)
        if n_resamples == 0:
            return None
        bounds = {
            PRECISION: (wilson_interval(self.in_real_ball, level), 0),
            RECALL: (wilson_interval(self.recalled, level), 0),
            DENSITY: (_bca_mean(self.real_balls / self.k, n_resamples, level, seed), n_resamples),
            COVERAGE: (_jackknife_coverage(self.covered, self.sole_cover, level), 0),
        }
        scores = self.scores()
        return {
            name: {
                # BCa percentiles of very few or heavily tied resamples can miss the value
                CI_LOW: min(low, scores[name]),
                CI_HIGH: max(high, scores[name]),
                N_RESAMPLES: used,
                LEVEL: level,
                METHOD: INTERVAL_METHODS[name],
            }
            for name, ((low, high), used) in bounds.items()
        }


def _bca_mean(values: np.ndarray, n_resamples: int, level: float, seed: int) -> tuple[float, float]:
    """BCa bootstrap interval of the mean of ``values`` (``[v, v]`` when all equal ``v``)."""
    mean = float(values.mean())
    if np.ptp(values) == 0:
        return mean, mean
    kwargs = dict(
        n_resamples=n_resamples,
        confidence_level=level,
        vectorized=True,
        batch=max(1, _BOOTSTRAP_VALUES // len(values)),
    )
    with warnings.catch_warnings():  # scipy warns when few resamples reach the tails
        warnings.simplefilter("ignore")
        ci = stats.bootstrap(
            (values,), np.mean, method="BCa", rng=np.random.default_rng(seed), **kwargs
        ).confidence_interval
        if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
            ci = stats.bootstrap(
                (values,), np.mean, method="percentile", rng=np.random.default_rng(seed), **kwargs
            ).confidence_interval
    return float(ci.low), float(ci.high)


def _jackknife_coverage(
    covered: np.ndarray, sole_cover: np.ndarray, level: float
) -> tuple[float, float]:
    """Normal interval of coverage with the delete-one jackknife variance over the synthetic
    samples: leaving sample ``j`` out lowers coverage by ``sole_cover[j] / n``."""
    n, m = len(covered), len(sole_cover)
    value = float(covered.mean())
    variance = (m - 1) / m * float(((sole_cover - sole_cover.mean()) ** 2).sum()) / n**2
    half = float(stats.norm.ppf(0.5 + level / 2) * np.sqrt(variance))
    return max(0.0, value - half), min(1.0, value + half)


def prdc_terms(real: np.ndarray, synthetic: np.ndarray, k: int = 5) -> PRDCTerms:
    """The per-sample terms of precision, recall, density and coverage, and of their intervals.

    Args:
        real: ``(N, F)`` real features (or any ``(N, ...)`` samples, flattened).
        synthetic: ``(M, F)`` synthetic features.
        k: the neighbour defining each sample's ball (5 is the published default).
    """
    real = np.asarray(real, np.float64).reshape(len(real), -1)
    synthetic = np.asarray(synthetic, np.float64).reshape(len(synthetic), -1)
    if min(len(real), len(synthetic)) <= k:
        raise ConfigError(
            f"precision/recall with k={k} needs more than {k} samples per set "
            f"(got {len(real)} real, {len(synthetic)} synthetic)"
        )
    n, m = len(real), len(synthetic)
    r_real = kth_neighbour_radius(real, k)
    r_syn = kth_neighbour_radius(synthetic, k)
    in_real_ball = np.zeros(m, bool)
    real_balls = np.zeros(m, np.int64)
    recalled = np.zeros(n, bool)
    hits = np.zeros(n, np.int64)  # synthetic samples in each real ball
    hitter = np.zeros(n, np.int64)  # one of them (the only one where hits == 1)
    rows = max(1, BLOCK_BYTES // (8 * n))
    for start in range(0, m, rows):
        d = pairwise_distances(synthetic[start : start + rows], real)  # (m_chunk, n)
        inside = d < r_real[None, :]
        in_real_ball[start : start + rows] = inside.any(axis=1)
        real_balls[start : start + rows] = inside.sum(axis=1)
        hit = inside.any(axis=0)
        hits += inside.sum(axis=0)
        hitter[hit] = start + np.argmax(inside, axis=0)[hit]
        recalled |= (d < r_syn[start : start + rows, None]).any(axis=0)
    sole_cover = np.bincount(hitter[hits == 1], minlength=m)
    return PRDCTerms(k, in_real_ball, real_balls, recalled, hits > 0, sole_cover)


def prdc(real: np.ndarray, synthetic: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``synthetic`` against ``real`` features.

    Args:
        real: ``(N, F)`` real features (or any ``(N, ...)`` samples, flattened).
        synthetic: ``(M, F)`` synthetic features.
        k: the neighbour defining each sample's ball (5 is the published default).
    """
    return prdc_terms(real, synthetic, k).scores()


def within_set_nn_distances(samples: np.ndarray) -> np.ndarray:
    """Each sample's Euclidean distance to its nearest *other* sample of the same set.

    >>> within_set_nn_distances(np.array([[0.0], [1.0], [3.0]])).tolist()
    [1.0, 1.0, 2.0]
    """
    dist, _ = knn(samples, samples, k=1, exclude_self=True)
    return dist[:, 0]


def diversity_verdict(
    synthetic_nn_median: float,
    real_nn_median: float,
    recall: float | None = None,
    coverage: float | None = None,
) -> tuple[str, list[str]]:
    """``("collapsed" | "reduced diversity" | "ok", reasons)`` by a fixed, documented rule.

    - collapsed: synthetic within-set NN median < ``COLLAPSE_RATIO`` (0.5) x the real one;
    - reduced diversity: that ratio < ``REDUCED_RATIO`` (0.8), or recall or coverage < 0.2;
    - ok otherwise.

    >>> diversity_verdict(0.24, 2.93)[0]
    'collapsed'
    >>> diversity_verdict(2.8, 2.93, recall=0.6, coverage=0.9)[0]
    'ok'
    """
    reasons: list[str] = []
    ratio = synthetic_nn_median / real_nn_median if real_nn_median > 0 else float("inf")
    line = (
        f"synthetic-to-synthetic median NN distance {synthetic_nn_median:.3g} vs "
        f"real-to-real {real_nn_median:.3g} (ratio {ratio:.2f})"
    )
    verdict = "ok"
    if ratio < COLLAPSE_RATIO:
        verdict = "collapsed"
        reasons.append(f"{line} < {COLLAPSE_RATIO}: synthetic images are near-repeats")
    elif ratio < REDUCED_RATIO:
        verdict = "reduced diversity"
        reasons.append(f"{line} < {REDUCED_RATIO}")
    for name, value in ((RECALL, recall), (COVERAGE, coverage)):
        if value is not None and value < LOW_RECALL:
            if verdict == "ok":
                verdict = "reduced diversity"
            reasons.append(
                f"{name} {value:.3f} < {LOW_RECALL}: part of the real data is not covered"
            )
    if not reasons:
        reasons.append(line)
    return verdict, reasons
