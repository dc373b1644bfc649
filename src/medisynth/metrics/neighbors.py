"""Exact Euclidean nearest neighbours at scale: chunked matrix products with float64 re-ranking.

Squared distances are computed block by block as ``|a|^2 + |b|^2 - 2 a.b`` in float32 on data
centred on the reference set's mean (smaller norms, less cancellation); the ``k + extra`` best
candidates of each query are then re-ranked with distances computed exactly in float64 from the
differences. The returned distances are therefore exact (float64), and the neighbours are exact
unless two candidates are closer together than float32 rounding (~1e-4 in squared distance on
[0, 1] images of 784 pixels).

>>> import numpy as np
>>> refs = np.eye(3)
>>> dist, idx = knn(np.array([[0.9, 0.0, 0.0], [0.0, 0.0, 2.0]]), refs, k=1)
>>> idx[:, 0].tolist(), np.round(dist[:, 0], 3).tolist()
([0, 2], [0.1, 1.0])
"""

from __future__ import annotations

import numpy as np
import torch

from medisynth.errors import ConfigError

#: Memory budget of one block of the distance matrix (bytes).
BLOCK_BYTES = 128 * 2**20


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2:
        raise ConfigError(f"expected (N, ...) samples, got shape {x.shape}")
    return x.reshape(len(x), -1)


def knn(
    queries: np.ndarray,
    refs: np.ndarray,
    k: int = 1,
    *,
    exclude_self: bool = False,
    extra: int = 4,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference samples of each query (Euclidean).

    Args:
        queries: ``(N, ...)`` samples, flattened to vectors.
        refs: ``(M, ...)`` samples of the same size.
        k: neighbours per query.
        exclude_self: queries *are* refs (same order); skip each one's own index (a duplicate
            at another index still counts, at distance 0).
        extra: additional float32 candidates re-ranked in float64.
        progress: show a progress bar.

    Returns:
        ``(distances, indices)``, each ``(N, k)``; distances float64, ascending.
    """
    q = _as_matrix(queries)
    r = _as_matrix(refs)
    if q.shape[1] != r.shape[1]:
        raise ConfigError(f"queries have {q.shape[1]} values per sample but refs {r.shape[1]}")
    n_ref = len(r) - (1 if exclude_self else 0)
    if k < 1 or k > n_ref:
        raise ConfigError(f"k={k} neighbours asked but only {n_ref} reference samples")
    if exclude_self and len(q) != len(r):
        raise ConfigError("exclude_self needs queries and refs to be the same set")
    centre = r.mean(axis=0, dtype=np.float64)
    r64 = r.astype(np.float64) - centre
    r32 = torch.from_numpy(r64.astype(np.float32))
    r_sq = torch.from_numpy((r64**2).sum(axis=1).astype(np.float32))
    n_cand = min(k + extra, n_ref)
    rows = max(1, min(len(q), BLOCK_BYTES // (4 * max(1, len(r)))))
    dist = np.empty((len(q), k), np.float64)
    index = np.empty((len(q), k), np.int64)
    from tqdm.auto import tqdm

    with (
        torch.inference_mode(),
        tqdm(total=len(q), desc="nearest neighbours", disable=not progress, unit="q") as bar,
    ):
        for start in range(0, len(q), rows):
            stop = min(start + rows, len(q))
            q64 = q[start:stop].astype(np.float64) - centre
            q32 = torch.from_numpy(q64.astype(np.float32))
            d2 = torch.addmm(r_sq[None, :], q32, r32.T, beta=1.0, alpha=-2.0)
            d2 += (q32 * q32).sum(dim=1, keepdim=True)
            if exclude_self:
                local = torch.arange(stop - start)
                d2[local, local + start] = float("inf")
            cand = torch.topk(d2, n_cand, dim=1, largest=False, sorted=False).indices.numpy()
            exact = ((q64[:, None, :] - r64[cand]) ** 2).sum(axis=2)
            if exclude_self:
                exact[cand == np.arange(start, stop)[:, None]] = np.inf
            order = np.argsort(exact, axis=1, kind="stable")[:, :k]
            index[start:stop] = np.take_along_axis(cand, order, axis=1)
            dist[start:stop] = np.sqrt(np.take_along_axis(exact, order, axis=1))
            bar.update(stop - start)
    return dist, index


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All Euclidean distances ``(len(a), len(b))`` in float64 (for moderate sizes).

    >>> pairwise_distances(np.zeros((1, 2)), np.array([[3.0, 4.0]])).tolist()
    [[5.0]]
    """
    a = _as_matrix(a).astype(np.float64)
    b = _as_matrix(b).astype(np.float64)
    centre = b.mean(axis=0)
    a, b = a - centre, b - centre
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


def kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each sample to its ``k``-th nearest *other* sample of the same set.

    >>> kth_neighbour_radius(np.array([[0.0], [1.0], [3.0]]), 1).tolist()
    [1.0, 1.0, 2.0]
    """
    dist, _ = knn(x, x, k=k, exclude_self=True)
    return dist[:, -1]
