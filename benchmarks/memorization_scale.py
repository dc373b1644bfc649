"""Nearest-neighbour search at scale: 50k synthetic x 50k training images of 28x28 on the CPU.

Usage: python benchmarks/memorization_scale.py [--n-synthetic 50000] [--n-train 50000]
       [--size 28] [--subset 2000] [--threads N]

Prints the wall time of :func:`medisynth.metrics.neighbors.knn` (chunked float32 matrix products
with exact float64 re-ranking) on the full problem, and, on a subset of queries against the full
training set, its agreement with and speed relative to two naive references run in the same
process: scikit-learn's ``NearestNeighbors(algorithm="brute")`` (float64) and scipy's
``cKDTree``. The images are structured like real ones (a low-rank image model plus noise, values
in [0, 1]), with some exact copies planted among the synthetic ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from medisynth.metrics.neighbors import knn


def images(n: int, size: int, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    codes = rng.normal(size=(n, len(basis))).astype(np.float32)
    flat = 0.5 + 0.1 * codes @ basis + rng.normal(0, 0.05, (n, size * size)).astype(np.float32)
    return np.clip(flat, 0, 1).reshape(n, 1, size, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-synthetic", type=int, default=50_000)
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(20, args.size * args.size)).astype(np.float32)
    train = images(args.n_train, args.size, rng, basis)
    synthetic = images(args.n_synthetic, args.size, rng, basis)
    synthetic[:100] = train[rng.choice(len(train), 100, replace=False)]  # planted exact copies
    size = f"{args.size}x{args.size}"
    print(
        f"{args.n_synthetic} synthetic x {args.n_train} training images of {size}, "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )

    start = time.perf_counter()
    dist, idx = knn(synthetic, train, k=1)
    full = time.perf_counter() - start
    copies = int((dist[:100, 0] == 0).sum())
    rate = args.n_synthetic * args.n_train / full / 1e6
    print(
        f"medisynth knn, full problem: {full:.1f} s ({rate:.0f} M distances/s); "
        f"planted copies found at distance 0: {copies}/100",
        flush=True,
    )

    queries = synthetic[: args.subset].reshape(args.subset, -1)
    flat_train = train.reshape(len(train), -1)
    start = time.perf_counter()
    sub_dist, sub_idx = knn(queries, flat_train, k=1)
    ours = time.perf_counter() - start

    from sklearn.neighbors import NearestNeighbors

    start = time.perf_counter()
    nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(flat_train.astype(np.float64))
    ref_dist, ref_idx = nn.kneighbors(queries.astype(np.float64))
    brute = time.perf_counter() - start
    print(
        f"subset {args.subset} queries: medisynth {ours:.2f} s, sklearn brute float64 "
        f"{brute:.2f} s (x{brute / ours:.1f}); same neighbour: "
        f"{(sub_idx[:, 0] == ref_idx[:, 0]).mean():.4%}, max |distance difference| "
        f"{np.abs(sub_dist[:, 0] - ref_dist[:, 0]).max():.2e}",
        flush=True,
    )

    from scipy.spatial import cKDTree

    kd_n = min(args.subset, 200)  # a k-d tree in 784 dimensions is slow: time fewer queries
    start = time.perf_counter()
    tree = cKDTree(flat_train.astype(np.float64))
    kd_dist, kd_idx = tree.query(queries[:kd_n].astype(np.float64), k=1)
    kd = time.perf_counter() - start
    start = time.perf_counter()
    knn(queries[:kd_n], flat_train, k=1)
    ours_kd = time.perf_counter() - start
    print(
        f"subset {kd_n} queries: medisynth {ours_kd:.2f} s, scipy cKDTree (build + query) "
        f"{kd:.2f} s (x{kd / ours_kd:.1f}); same neighbour: "
        f"{(sub_idx[:kd_n, 0] == kd_idx).mean():.4%}, max |distance difference| "
        f"{np.abs(sub_dist[:kd_n, 0] - kd_dist).max():.2e}"
    )


if __name__ == "__main__":
    main()
