"""Memorisation and privacy: nearest training images, near-copies, the data-copying test C_T.

For each synthetic image, the distance to its nearest training image (pixel space, and feature
space when features are given). The same distance from *held-out* real images (never seen in
training) calibrates what "too close" means:

- **threshold**: the ``percentile``-th (default 5th) percentile of held-out-to-train NN distances,
  leaving out exact duplicates (a robust low percentile, not the minimum, which one duplicate in
  the real data would set to 0). A synthetic image under it is a *near-copy*; a generator that
  copies no more than unseen real data gives a near-copy fraction of about ``percentile / 100``.
- **C_T** (Meehan, Chaudhuri, Dasgupta 2020, "A non-parametric test to detect data-copying in
  generative models", AISTATS): the training set is partitioned into cells by k-means; in each
  cell the NN distances to the cell's training images of synthetic (Q) and held-out (P) images are
  compared by a Mann-Whitney U test, z-scored ``(U - mn/2) / sqrt(mn(m+n+1)/12)`` with ``U`` the
  number of (q, p) pairs with ``d(q) > d(p)`` (ties 1/2). C_T is the mean of the cell z-scores
  weighted by the held-out share of each cell, over cells holding at least ``min_cell_samples``
  synthetic images. C_T << 0 (e.g. < -3) means synthetic images sit closer to the training data
  than unseen real images: data-copying. C_T >> 0 means underfitting.
- **Duplicates** between real sets (held-out vs train, within train) are a data finding of their
  own: they leak test data into training and bias every memorisation figure.

Distances are Euclidean on images scaled to ``[0, 1]``, computed by
:func:`medisynth.metrics.neighbors.knn` (chunked, exact float64 re-ranking), which scales to 50k x
50k images of 28x28 in about a minute on two cores (see ``benchmarks/memorization_scale.py``).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> train, heldout = rng.random((60, 1, 6, 6)), rng.random((30, 1, 6, 6))
>>> copies = train[:30] + rng.normal(0, 0.01, (30, 1, 6, 6))
>>> result = memorization(copies, train, heldout)
>>> result.pixel.near_copy_fraction, result.pixel.ct < -3
(1.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medisynth.errors import ConfigError
from medisynth.metrics.bootstrap import (
    CI_HIGH,
    CI_LOW,
    CONFIDENCE,
    LEVEL,
    N_RESAMPLES,
    RESAMPLES,
    wilson_interval,
)
from medisynth.metrics.neighbors import knn

#: Default calibration percentile of held-out-to-train NN distances.
PERCENTILE = 5.0
#: Two images closer than this (L2 on [0, 1] images) are duplicates.
DUPLICATE_TOL = 1e-6
#: C_T below this is reported as data-copying.
CT_COPYING = -3.0
#: Near-copy excess (z-score of the fraction against its expectation) reported as copying.
NEAR_COPY_Z = 3.0


def mann_whitney_z(q: np.ndarray, p: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of sample ``q`` against ``p`` (negative: ``q`` is smaller).

    >>> round(mann_whitney_z(np.array([0.1, 0.2]), np.array([1.0, 2.0, 3.0])), 4)
    -1.7321
    """
    from scipy.stats import rankdata

    m, n = len(q), len(p)
    if m == 0 or n == 0:
        raise ConfigError("the Mann-Whitney test needs two non-empty samples")
    ranks = rankdata(np.concatenate([q, p]))
    u = ranks[:m].sum() - m * (m + 1) / 2.0
    return float((u - m * n / 2.0) / np.sqrt(m * n * (m + n + 1) / 12.0))


@dataclass
class CopyingTest:
    """The C_T statistic and its per-cell parts."""

    ct: float
    cell_z: list[float]
    cell_heldout_share: list[float]
    cell_synthetic_count: list[int]
    cells_used: list[int]
    n_cells: int
    min_cell_samples: int


def data_copying_test(
    synthetic: np.ndarray,
    train: np.ndarray,
    heldout: np.ndarray,
    *,
    n_cells: int | None = None,
    min_cell_samples: int = 20,
    seed: int = 0,
) -> CopyingTest:
    """Meehan et al.'s C_T: k-means cells of ``train``, per-cell Mann-Whitney z, weighted mean.

    Args:
        synthetic, train, heldout: ``(N, ...)`` samples (pixels or features).
        n_cells: k-means cells; default ``clip(len(heldout) // 20, 1, 50)``.
        min_cell_samples: cells with fewer synthetic samples are left out (the paper's tau).
        seed: k-means seed.
    """
    from sklearn.cluster import KMeans

    q = np.asarray(synthetic, np.float64).reshape(len(synthetic), -1)
    t = np.asarray(train, np.float64).reshape(len(train), -1)
    p = np.asarray(heldout, np.float64).reshape(len(heldout), -1)
    if n_cells is None:
        n_cells = int(np.clip(len(p) // 20, 1, 50))
    n_cells = max(1, min(n_cells, len(t)))
    kmeans = KMeans(n_clusters=n_cells, n_init=1, random_state=seed).fit(t.astype(np.float32))
    t_cells = kmeans.labels_
    q_cells = kmeans.predict(q.astype(np.float32))
    p_cells = kmeans.predict(p.astype(np.float32))
    z_values, shares, counts, used = [], [], [], []
    for cell in range(n_cells):
        t_in, q_in, p_in = t[t_cells == cell], q[q_cells == cell], p[p_cells == cell]
        counts.append(len(q_in))
        shares.append(len(p_in) / len(p))
        if len(q_in) < min_cell_samples or len(p_in) == 0 or len(t_in) == 0:
            z_values.append(float("nan"))
            continue
        d_q, _ = knn(q_in, t_in, k=1)
        d_p, _ = knn(p_in, t_in, k=1)
        z_values.append(mann_whitney_z(d_q[:, 0], d_p[:, 0]))
        used.append(cell)
    if not used:
        raise ConfigError(
            f"C_T: no k-means cell holds {min_cell_samples} synthetic and 1 held-out sample "
            f"({n_cells} cells, {len(q)} synthetic); give more synthetic images or fewer cells"
        )
    weights = np.array([shares[c] for c in used])
    ct = float(np.dot(weights, [z_values[c] for c in used]) / weights.sum())
    return CopyingTest(ct, z_values, shares, counts, used, n_cells, min_cell_samples)


def find_duplicates(
    a: np.ndarray, b: np.ndarray | None = None, tol: float = DUPLICATE_TOL, k: int = 3
) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, distance)`` of samples of ``a`` and ``b`` closer than ``tol``.

    With ``b`` None, duplicates within ``a`` (each pair once, ``i < j``). Only the ``k`` nearest
    partners of each sample are examined.

    >>> a = np.array([[0.0, 1.0], [0.5, 0.5], [0.0, 1.0]])
    >>> find_duplicates(a)
    [(0, 2, 0.0)]
    >>> find_duplicates(a[:2], np.array([[0.5, 0.5]]))
    [(1, 0, 0.0)]
    """
    same = b is None
    refs = a if b is None else b
    k = min(k, len(refs) - (1 if same else 0))
    if k < 1:
        return []
    dist, idx = knn(a, refs, k=k, exclude_self=same)
    pairs = set()
    for i, j in zip(*np.nonzero(dist <= tol), strict=True):
        first, second = int(i), int(idx[i, j])
        if same:
            first, second = min(first, second), max(first, second)
        pairs.add((first, second, float(dist[i, j])))
    return sorted(pairs)


@dataclass
class SpaceResult:
    """Memorisation figures in one space (pixels or features)."""

    space: str
    synthetic_to_train: np.ndarray
    synthetic_nn_index: np.ndarray
    heldout_to_train: np.ndarray | None
    threshold: float | None
    percentile: float
    near_copy_fraction: float | None
    ct: float | None = None
    copying_test: CopyingTest | None = None

    def near_copy_z(self) -> float:
        """z-score of the near-copy fraction against ``percentile / 100`` (see ``verdict``)."""
        if self.near_copy_fraction is None or self.heldout_to_train is None:
            return float("nan")
        p = self.percentile / 100.0
        n_syn, n_held = len(self.synthetic_to_train), len(self.heldout_to_train)
        return float(
            (self.near_copy_fraction - p) / np.sqrt(p * (1 - p) * (1 / n_syn + 1 / n_held))
        )

    def near_copy_ci(
        self, n_resamples: int = RESAMPLES, level: float = CONFIDENCE, seed: int = 0
    ) -> dict[str, Any] | None:
        """Wilson score interval of the near-copy fraction over the synthetic images.

        Each synthetic image is a near-copy or not against the *fixed* threshold, so the count
        is binomial: the interval leaves out the threshold's own uncertainty (which
        ``near_copy_z`` includes), and is not ``[0, 0]`` when no copy was found. ``None``
        without a threshold or with ``n_resamples=0`` (intervals off); ``seed`` is unused
        (kept for the common signature of the report's intervals).

        >>> space = SpaceResult("pixels", np.r_[np.zeros(20), np.ones(80)], np.zeros(100),
        ...                     None, 0.5, 5.0, 0.2)
        >>> ci = space.near_copy_ci()
        >>> bool(ci["ci_low"] < 0.2 < ci["ci_high"])
        True
        """
        if self.threshold is None or n_resamples == 0:
            return None
        low, high = wilson_interval(self.synthetic_to_train < self.threshold, level)
        return {CI_LOW: low, CI_HIGH: high, N_RESAMPLES: 0, LEVEL: level}

    def closest_pairs(self, k: int = 8) -> list[tuple[int, int, float]]:
        """The ``k`` closest (synthetic index, train index, distance) pairs."""
        order = np.argsort(self.synthetic_to_train, kind="stable")[:k]
        return [
            (int(i), int(self.synthetic_nn_index[i]), float(self.synthetic_to_train[i]))
            for i in order
        ]

    def summary(self, k_pairs: int = 8) -> dict[str, Any]:
        """JSON-ready figures."""
        held = self.heldout_to_train
        out: dict[str, Any] = {
            "synthetic_to_train_median": float(np.median(self.synthetic_to_train)),
            "synthetic_to_train_min": float(self.synthetic_to_train.min()),
            "heldout_to_train_median": None if held is None else float(np.median(held)),
            "threshold": self.threshold,
            "threshold_percentile": self.percentile,
            "near_copy_fraction": self.near_copy_fraction,
            "expected_near_copy_fraction": self.percentile / 100.0,
            "near_copy_z": self.near_copy_z(),
            "n_near_copies": None
            if self.threshold is None
            else int((self.synthetic_to_train < self.threshold).sum()),
            "closest_pairs": [
                {"synthetic": i, "train": j, "distance": d}
                for i, j, d in self.closest_pairs(k_pairs)
            ],
        }
        if self.copying_test is not None:
            test = self.copying_test
            out["ct"] = test.ct
            out["ct_cells"] = test.n_cells
            out["ct_cells_used"] = len(test.cells_used)
            out["ct_min_cell_samples"] = test.min_cell_samples
        return out


def calibrate_threshold(
    heldout_to_train: np.ndarray, percentile: float = PERCENTILE, tol: float = DUPLICATE_TOL
) -> float:
    """The ``percentile``-th percentile of held-out-to-train NN distances, duplicates left out.

    >>> calibrate_threshold(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), percentile=50)
    2.5
    """
    values = np.asarray(heldout_to_train, np.float64)
    kept = values[values > tol]
    if len(kept) == 0:
        raise ConfigError("every held-out image duplicates a training image; cannot calibrate")
    return float(np.percentile(kept, percentile))


def memorization_in_space(
    synthetic: np.ndarray,
    train: np.ndarray,
    heldout: np.ndarray | None = None,
    *,
    space: str = "pixels",
    percentile: float = PERCENTILE,
    copying_test: bool = True,
    n_cells: int | None = None,
    min_cell_samples: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> SpaceResult:
    """NN distances to ``train``, near-copy fraction and C_T (both need ``heldout``)."""
    d_syn, i_syn = knn(synthetic, train, k=1, progress=progress)
    result = SpaceResult(space, d_syn[:, 0], i_syn[:, 0], None, None, percentile, None)
    if heldout is None:
        return result
    d_held, _ = knn(heldout, train, k=1, progress=progress)
    result.heldout_to_train = d_held[:, 0]
    result.threshold = calibrate_threshold(result.heldout_to_train, percentile)
    result.near_copy_fraction = float((result.synthetic_to_train < result.threshold).mean())
    if copying_test:
        try:
            test = data_copying_test(
                synthetic,
                train,
                heldout,
                n_cells=n_cells,
                min_cell_samples=min(min_cell_samples, len(synthetic)),
                seed=seed,
            )
        except ConfigError:
            test = None
        result.copying_test = test
        result.ct = None if test is None else test.ct
    return result


@dataclass
class MemorizationResult:
    """Pixel-space (and optionally feature-space) memorisation, plus real-data duplicates."""

    pixel: SpaceResult
    feature: SpaceResult | None = None
    heldout_train_duplicates: list[tuple[int, int, float]] = field(default_factory=list)
    train_duplicates: list[tuple[int, int, float]] = field(default_factory=list)

    def verdict(self) -> tuple[str, list[str]]:
        """``("possible copying" | "ok" | "not calibrated", reasons)``.

        Possible copying when C_T < -3 in any space, or when the near-copy fraction exceeds
        twice the expected ``percentile / 100`` *and* significantly so: the one-sided z-score
        ``(f - p) / sqrt(p (1 - p) (1/n_synthetic + 1/n_heldout))`` is above 3 (the threshold
        itself is estimated from the held-out set, hence its size in the variance).
        """
        reasons: list[str] = []
        calibrated = False
        for space in (self.pixel, self.feature):
            if space is None or space.near_copy_fraction is None:
                continue
            calibrated = True
            expected = space.percentile / 100.0
            z = space.near_copy_z()
            if space.near_copy_fraction > 2 * expected and z > NEAR_COPY_Z:
                reasons.append(
                    f"{space.space}: {space.near_copy_fraction:.1%} of synthetic images are "
                    f"nearer a training image than {100 - space.percentile:g}% of held-out "
                    f"real images are (expected {expected:.0%}, z = {z:.1f})"
                )
            if space.ct is not None and space.ct < CT_COPYING:
                reasons.append(
                    f"{space.space}: data-copying test C_T = {space.ct:.2f} < {CT_COPYING}"
                )
        if not calibrated:
            return "not calibrated", ["no held-out real set: near-copies cannot be calibrated"]
        return ("possible copying", reasons) if reasons else ("ok", ["no sign of copying"])


def memorization(
    synthetic: np.ndarray,
    train: np.ndarray,
    heldout: np.ndarray | None = None,
    *,
    features: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
    percentile: float = PERCENTILE,
    n_cells: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> MemorizationResult:
    """Memorisation of ``synthetic`` w.r.t. ``train`` in pixels (and features), real duplicates.

    Args:
        synthetic, train, heldout: images ``(N, C, ...)`` in ``[0, 1]`` (same size).
        features: ``(synthetic, train, heldout)`` feature matrices for the feature space.
        percentile: calibration percentile of held-out-to-train distances.
    """
    for name, x in (("synthetic", synthetic), ("heldout", heldout)):
        if x is not None and np.shape(x)[1:] != np.shape(train)[1:]:
            raise ConfigError(
                f"{name} images are {np.shape(x)[1:]} but training images {np.shape(train)[1:]}"
            )
    options: dict[str, Any] = dict(percentile=percentile, n_cells=n_cells, seed=seed)
    result = MemorizationResult(
        memorization_in_space(synthetic, train, heldout, progress=progress, **options)
    )
    if features is not None:
        f_syn, f_train, f_held = features
        result.feature = memorization_in_space(f_syn, f_train, f_held, space="features", **options)
    if heldout is not None:
        result.heldout_train_duplicates = find_duplicates(heldout, train)
    result.train_duplicates = find_duplicates(train)
    return result
