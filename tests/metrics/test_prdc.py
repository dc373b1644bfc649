"""Precision/recall/density/coverage against the reference ``prdc`` package; collapse verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from medisynth.metrics import prdc as P

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_matches_the_reference_package(k: int) -> None:
    reference = pytest.importorskip("prdc", reason="the reference package prdc is not installed")
    real = RNG.normal(size=(120, 10))
    fake = RNG.normal(size=(90, 10)) * 1.2 + 0.3
    ours = P.prdc(real, fake, k=k)
    theirs = reference.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    for key in (P.PRECISION, P.RECALL, P.DENSITY, P.COVERAGE):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


def test_identical_sets_score_one() -> None:
    x = RNG.normal(size=(60, 5))
    scores = P.prdc(x, x, k=5)
    assert scores[P.PRECISION] == scores[P.RECALL] == scores[P.COVERAGE] == 1.0


def test_mode_collapse_gives_low_recall_and_coverage() -> None:
    real = RNG.normal(size=(300, 8))
    collapsed = np.repeat(real[:3], 100, axis=0) + RNG.normal(0, 1e-3, size=(300, 8))
    healthy = RNG.normal(size=(300, 8))
    low, good = P.prdc(real, collapsed), P.prdc(real, healthy)
    assert low[P.RECALL] < 0.1 and low[P.COVERAGE] < 0.1
    assert good[P.RECALL] > 0.5 and good[P.COVERAGE] > 0.5


def test_within_set_nn_distances_match_sklearn() -> None:
    from sklearn.neighbors import NearestNeighbors

    x = RNG.random((70, 1, 5, 5))
    flat = x.reshape(70, -1)
    dist, _ = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(flat).kneighbors(flat)
    np.testing.assert_allclose(P.within_set_nn_distances(x), dist[:, 1], rtol=1e-9)


def test_collapse_verdict_rule() -> None:
    # the known failure: a textbook cDCGAN on BreastMNIST, 0.24 vs 2.93
    assert P.diversity_verdict(0.24, 2.93)[0] == "collapsed"
    assert P.diversity_verdict(2.0, 2.93)[0] == "reduced diversity"
    assert P.diversity_verdict(2.9, 2.93, recall=0.1, coverage=0.9)[0] == "reduced diversity"
    verdict, reasons = P.diversity_verdict(2.9, 2.93, recall=0.5, coverage=0.9)
    assert verdict == "ok" and "2.93" in reasons[0]


def test_a_collapsed_image_set_is_called_collapsed() -> None:
    real = RNG.random((100, 1, 8, 8))
    fake = np.repeat(real[:4], 25, axis=0) + RNG.normal(0, 0.01, size=(100, 1, 8, 8))
    ratio_fake = np.median(P.within_set_nn_distances(fake))
    verdict, _ = P.diversity_verdict(ratio_fake, np.median(P.within_set_nn_distances(real)))
    assert verdict == "collapsed"
