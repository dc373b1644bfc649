"""Stratified, seeded fractions of a labelled training set (the data-fraction utility curve).

:func:`stratified_subset` keeps ``fraction`` of the images of every class: the class counts are
split by largest remainders so that they add up to ``round(fraction * N)`` (at least one image
per class present), and each class's images are taken in the order of one seeded permutation per
class. The same seed therefore gives *nested* subsets (the 10% subset lies inside the 25% one),
which keeps the points of a curve comparable, and a fraction of 1 is the whole set.
:func:`subset_fingerprint` names a subset by its parent data and its indices.

>>> labels = np.array([0] * 8 + [1] * 2)
>>> stratified_subset(labels, 0.5, seed=0).tolist()
[2, 3, 4, 6, 8]
>>> np.bincount(labels[stratified_subset(labels, 0.5, seed=0)]).tolist()
[4, 1]
>>> set(stratified_subset(labels, 0.3, seed=1)) <= set(stratified_subset(labels, 0.6, seed=1))
True
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from medisynth.errors import ConfigError


def class_quota(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Images per class: ``round(fraction * total)`` split by largest remainders, at least one
    for every class present, never more than a class holds.

    >>> class_quota(np.array([80, 20]), 0.25).tolist()
    [20, 5]
    >>> class_quota(np.array([98, 2]), 0.1).tolist()
    [9, 1]
    """
    counts = np.asarray(counts, np.int64)
    total = max(1, int(round(fraction * counts.sum())))
    exact = counts * total / max(1, counts.sum())
    quota = np.floor(exact).astype(np.int64)
    order = sorted(range(len(counts)), key=lambda i: (quota[i] - exact[i], i))
    for i in order[: total - int(quota.sum())]:
        quota[i] += 1
    for empty in np.flatnonzero((counts > 0) & (quota == 0)):  # every class present keeps one
        quota[empty] = 1
        largest = int(np.argmax(quota))
        if quota[largest] > 1:
            quota[largest] -= 1
    return np.minimum(quota, counts)


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified, seeded ``fraction`` of the images (see the module doc).

    Raises:
        ConfigError: ``fraction`` outside ``(0, 1]``.
    """
    if not (isinstance(fraction, float | int) and 0 < fraction <= 1) or math.isnan(fraction):
        raise ConfigError(f"a data fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels).astype(np.int64).ravel()
    if len(labels) == 0:
        raise ConfigError("the training set holds no images")
    counts = np.bincount(labels)
    quota = class_quota(counts, float(fraction))
    rng = np.random.default_rng(seed)
    chosen = []
    for label, keep in enumerate(quota):
        members = np.flatnonzero(labels == label)
        chosen.append(members[rng.permutation(len(members))[:keep]])
    return np.sort(np.concatenate(chosen))


def subset_fingerprint(parent: str, indices: np.ndarray) -> str:
    """The parent data's fingerprint with a digest of the chosen indices.

    >>> subset_fingerprint("abc", np.array([1, 2]))[:20]
    'abc:subset=2:0c730b6'
    """
    digest = hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()
    return f"{parent}:subset={len(indices)}:{digest[:16]}"
