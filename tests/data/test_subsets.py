"""Stratified, seeded data fractions: class balance kept, reproducible, nested, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from medisynth.data.subsets import class_quota, stratified_subset, subset_fingerprint
from medisynth.errors import ConfigError

LABELS = np.repeat([0, 1, 2], [60, 30, 10])
np.random.default_rng(0).shuffle(LABELS)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 1.0])
def test_subset_keeps_the_class_balance(fraction: float) -> None:
    chosen = stratified_subset(LABELS, fraction, seed=3)
    assert len(chosen) == round(fraction * len(LABELS)) and len(set(chosen)) == len(chosen)
    counts = np.bincount(LABELS[chosen], minlength=3)
    np.testing.assert_allclose(counts, np.array([60, 30, 10]) * fraction, atol=1)
    assert np.all(np.diff(chosen) > 0)  # sorted indices


def test_subset_is_seeded_and_nested() -> None:
    a, b = stratified_subset(LABELS, 0.3, seed=1), stratified_subset(LABELS, 0.3, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, stratified_subset(LABELS, 0.3, seed=2))
    small, large = (stratified_subset(LABELS, f, seed=5) for f in (0.1, 0.5))
    assert set(small) <= set(large)
    assert np.array_equal(stratified_subset(LABELS, 1.0, seed=9), np.arange(len(LABELS)))


def test_every_class_keeps_an_image_and_the_total_holds() -> None:
    assert class_quota(np.array([98, 2]), 0.1).tolist() == [9, 1]
    assert class_quota(np.array([5, 0, 5]), 0.1).tolist() == [1, 0, 1]
    labels = np.repeat([0, 1], [98, 2])
    assert np.bincount(labels[stratified_subset(labels, 0.05, seed=0)]).tolist() == [4, 1]


def test_refusals_and_fingerprint() -> None:
    for bad in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="fraction"):
            stratified_subset(LABELS, bad, seed=0)
    a = subset_fingerprint("data", np.array([1, 2, 3]))
    assert a.startswith("data:subset=3:") and a != subset_fingerprint("data", np.array([1, 2, 4]))
