"""Fidelity and diversity: improved precision/recall, density/coverage, within-set NN distances.

- Precision and recall (Kynkäänniemi et al. 2019): each real (resp. synthetic) sample owns a ball
  reaching its ``k``-th nearest neighbour in its own set; precision is the fraction of synthetic
  samples inside some real ball, recall the fraction of real samples inside some synthetic ball.
- Density and coverage (Naeem et al. 2020): density counts real balls around each synthetic sample
  (divided by ``k``; about 1 for matching distributions, can exceed 1); coverage is the fraction of
  real samples whose ball holds at least one synthetic sample.

Ball membership is strict (``distance < radius``), as in the reference ``prdc`` package.

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

import numpy as np

from medisynth.errors import ConfigError
from medisynth.metrics.neighbors import BLOCK_BYTES, knn, kth_neighbour_radius, pairwise_distances

PRECISION = "precision"
RECALL = "recall"
DENSITY = "density"
COVERAGE = "coverage"

#: Synthetic within-set NN median below this fraction of the real one: "collapsed".
COLLAPSE_RATIO = 0.5
#: Synthetic within-set NN median below this fraction of the real one: "reduced diversity".
REDUCED_RATIO = 0.8
#: Recall or coverage below this: "reduced diversity" (at least).
LOW_RECALL = 0.2


def prdc(real: np.ndarray, synthetic: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``synthetic`` against ``real`` features.

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
    r_real = kth_neighbour_radius(real, k)
    r_syn = kth_neighbour_radius(synthetic, k)
    in_real_ball = np.zeros(len(synthetic), bool)
    real_balls_count = np.zeros(len(synthetic), np.int64)
    real_recalled = np.zeros(len(real), bool)
    rows = max(1, BLOCK_BYTES // (8 * len(real)))
    for start in range(0, len(synthetic), rows):
        d = pairwise_distances(synthetic[start : start + rows], real)  # (m_chunk, n)
        inside = d < r_real[None, :]
        in_real_ball[start : start + rows] = inside.any(axis=1)
        real_balls_count[start : start + rows] = inside.sum(axis=1)
        real_recalled |= (d < r_syn[start : start + rows, None]).any(axis=0)
    nn_real_to_syn, _ = knn(real, synthetic, k=1)
    return {
        PRECISION: float(in_real_ball.mean()),
        RECALL: float(real_recalled.mean()),
        DENSITY: float(real_balls_count.mean() / k),
        COVERAGE: float((nn_real_to_syn[:, 0] < r_real).mean()),
    }


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
