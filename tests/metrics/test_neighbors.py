"""Chunked nearest neighbours against scipy's cKDTree and sklearn's brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from medisynth.errors import ConfigError
from medisynth.metrics import neighbors

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("k", [1, 3])
def test_knn_matches_ckdtree(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neighbors, "BLOCK_BYTES", 4 * 50 * 7)  # force several blocks
    refs = RNG.random((50, 1, 4, 4)).astype(np.float32)
    queries = RNG.random((23, 1, 4, 4)).astype(np.float32)
    dist, idx = neighbors.knn(queries, refs, k=k)
    ref_dist, ref_idx = cKDTree(refs.reshape(50, -1).astype(np.float64)).query(
        queries.reshape(23, -1).astype(np.float64), k=k
    )
    np.testing.assert_allclose(dist, np.reshape(ref_dist, (23, k)), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(idx, np.reshape(ref_idx, (23, k)))


def test_knn_is_exact_for_duplicates_and_large_offsets() -> None:
    refs = RNG.random((40, 784)) + 100.0  # large norms: float32 cancellation territory
    queries = np.vstack([refs[7], refs[3] + 1e-4])
    dist, idx = neighbors.knn(queries, refs)
    assert idx[:, 0].tolist() == [7, 3]
    assert dist[0, 0] == 0.0
    assert dist[1, 0] == pytest.approx(1e-4 * np.sqrt(784), rel=1e-6)


def test_knn_exclude_self_keeps_duplicates_at_other_indices() -> None:
    x = RNG.random((10, 3))
    x[6] = x[2]
    dist, idx = neighbors.knn(x, x, k=1, exclude_self=True)
    assert idx[2, 0] == 6 and idx[6, 0] == 2 and dist[2, 0] == 0.0
    assert (idx[:, 0] != np.arange(10)).all()


def test_knn_matches_sklearn_with_exclude_self() -> None:
    from sklearn.neighbors import NearestNeighbors

    x = RNG.normal(size=(64, 9))
    dist, idx = neighbors.knn(x, x, k=4, exclude_self=True)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(x).kneighbors(x)
    np.testing.assert_allclose(dist, ref_dist[:, 1:], rtol=1e-9)
    np.testing.assert_array_equal(idx, ref_idx[:, 1:])


def test_knn_refuses_mismatched_sizes_and_too_large_k() -> None:
    with pytest.raises(ConfigError):
        neighbors.knn(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ConfigError):
        neighbors.knn(np.zeros((2, 3)), np.zeros((2, 3)), k=2, exclude_self=True)
