"""Distribution distances on features: FID, KID, FRD, relative FD, tri-planar FID for volumes.

- Fréchet distance (FID on Inception features, "FD" on any): ``|mu1 - mu2|^2 + tr(S1) + tr(S2)
  - 2 tr((S1 S2)^(1/2))`` with sample covariances (``ddof=1``). The trace of the matrix square root
  is computed from the eigenvalues of ``S1^(1/2) S2 S1^(1/2)`` (symmetric, so ``eigh``), which is
  equal to ``tr sqrtm(S1 S2)`` and faster and more stable than ``scipy.linalg.sqrtm``.
- KID: unbiased MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / F + 1)^3``, averaged over
  random subsets of equal size from both sets: mean and standard deviation (``ddof=1``).
- FRD (Fréchet radiomic distance, FRDv1 of Konz et al. 2024 and the ``frd-score`` package):
  radiomic features are z-scored with the *reference* set's mean and standard deviation
  (``ddof=0``; features constant in the reference set are dropped), the squared Fréchet distance
  ``d_F^2`` is taken, and FRD is reported as ``log(d_F^2)``, the convention of the published
  values and of ``frd-score``'s default (the paper's Eq. 3 writes ``log(d_F)``, half of it).
  :func:`frd` returns ``d_F^2``; :func:`frd_log` the reported value.
- Relative FD: ``FD(synthetic, train) / FD(held-out real, train)``: about 1 when synthetic data is
  as close to the training data as unseen real data; well below 1 hints at copying, above 1 at
  a gap.

>>> import numpy as np
>>> f = np.random.default_rng(0).normal(size=(200, 8))
>>> round(fid(f, f), 9)
0.0
>>> round(fid(f, f + 1.0), 6)   # a shift by 1 in 8 dims
8.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medisynth.errors import ConfigError

FID = "fid"
KID_MEAN = "kid_mean"
KID_STD = "kid_std"
FRD = "frd"


def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ConfigError(f"{name} features must be (N, F), got shape {x.shape}")
    if len(x) < 2:
        raise ConfigError(f"{name}: at least 2 samples are needed, got {len(x)}")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name} features contain NaN or infinite values")
    return x


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and sample covariance ``(F, F)`` (``ddof=1``) of ``(N, F)`` features."""
    features = _features(features, "the")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(
        features.shape[1], features.shape[1]
    )


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between two Gaussians given by means and covariances.

    >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    4.0
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ConfigError(f"feature sizes differ: {mu1.shape} vs {mu2.shape}")
    from threadpoolctl import threadpool_limits

    # One BLAS thread: on a busy 2-core machine multi-threaded eigh can be 50x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        root1 = _sqrt_psd(sigma1)
        inner = root1 @ sigma2 @ root1
        eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


def fid(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Fréchet distance between two feature sets ``(N, F)`` and ``(M, F)``."""
    return frechet_distance(*feature_statistics(real), *feature_statistics(synthetic))


def fid_bootstrap(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    n_resamples: int = 50,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Half-sampling interval of :func:`fid` over the *synthetic* samples (real side fixed).

    The real statistics stay fixed (the interval is the sampling uncertainty of the synthetic
    set): ``R = S_real^(1/2)`` is computed once, and each resample needs the eigenvalues of
    ``R S_syn R``. With ``Z = synthetic R``, these are the non-zero eigenvalues of the centred
    Gram matrix of the resampled rows of ``Z`` divided by ``b - 1``: a ``b x b`` problem when
    the ``b`` resampled rows are fewer than the ``F`` features (e.g. 273 vs 2048), else the
    ``F x F`` one. ``None`` when ``n_resamples`` is 0.

    Resamples are random *halves* of the synthetic set drawn without replacement (see
    :mod:`medisynth.metrics.bootstrap`), and the interval is shifted to the full-set value (the
    FD grows as samples get fewer; clipped at 0). Drawing with replacement instead misstates the
    spread: repeats lower the covariance's rank. Measured against the spread of the FD over 30
    fresh synthetic sets of Gaussian features: 546 samples in 784 dimensions, half-sample sd
    1.47 vs 1.46 fresh (with replacement: 8x too wide); 300 in 40 dimensions, 0.16 vs 0.12
    (with replacement: 0.24).

    >>> rng = np.random.default_rng(0)
    >>> f, g = rng.normal(size=(300, 6)), rng.normal(size=(200, 6)) + 0.5
    >>> ci = fid_bootstrap(f, g, n_resamples=100)
    >>> bool(ci["ci_low"] < fid(f, g) < ci["ci_high"])
    True
    """
    from medisynth.metrics.bootstrap import bootstrap_ci

    if n_resamples == 0:
        return None
    x = _features(real, "real")
    y = _features(synthetic, "synthetic")
    if x.shape[1] != y.shape[1]:
        raise ConfigError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        mu_r, sigma_r = feature_statistics(x)
        trace_r = float(np.trace(sigma_r))
        z = y @ _sqrt_psd(sigma_r)
        m, width = y.shape
        gram = z @ z.T if m // 2 <= width else None

        def resampled(j: np.ndarray) -> float:
            ys = y[j]
            mu = ys.mean(axis=0)
            b = len(j)
            trace_s = float(((ys - mu) ** 2).sum() / (b - 1))
            if gram is not None and b <= width:
                g = gram[np.ix_(j, j)]
                g = g - g.mean(axis=0)[None, :] - g.mean(axis=1)[:, None] + g.mean()
            else:
                zc = z[j] - z[j].mean(axis=0)
                g = zc.T @ zc
            eigenvalues = np.linalg.eigvalsh((g + g.T) / 2.0) / (b - 1)
            diff = mu_r - mu
            value = diff @ diff + trace_r + trace_s - 2.0 * np.sqrt(eigenvalues.clip(0)).sum()
            return float(max(value, 0.0))

        value = resampled(np.arange(m))
        ci = bootstrap_ci(
            resampled, m, n_resamples=n_resamples, level=level, seed=seed, estimate=value,
            half_sampling=True,
        )  # fmt: skip
    if ci is not None:
        ci["ci_low"], ci["ci_high"] = max(ci["ci_low"], 0.0), max(ci["ci_high"], 0.0)
    return ci


def _polynomial_mmd2(
    x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float
) -> float:
    m = len(x)
    k_xx = (gamma * (x @ x.T) + coef0) ** degree
    k_yy = (gamma * (y @ y.T) + coef0) ** degree
    k_xy = (gamma * (x @ y.T) + coef0) ** degree
    off = m * (m - 1)
    return float(
        (k_xx.sum() - np.trace(k_xx)) / off
        + (k_yy.sum() - np.trace(k_yy)) / off
        - 2.0 * k_xy.sum() / (m * m)
    )


def kid(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel distance: mean and std of the unbiased MMD^2 over random subsets.

    ``subset_size`` is capped at the smaller set's size; each subset draws without replacement
    from each set. The std is ``nan`` for one subset.

    >>> f = np.random.default_rng(0).normal(size=(100, 4))
    >>> mean, std = kid(f, f + 2.0, subsets=5, subset_size=50)
    >>> mean > 3 * std > 0
    True
    """
    x = _features(real, "real")
    y = _features(synthetic, "synthetic")
    if x.shape[1] != y.shape[1]:
        raise ConfigError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    size = min(subset_size, len(x), len(y))
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    values = []
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # small products: threads only contend
        for _ in range(subsets):
            xs = x if size == len(x) else x[rng.choice(len(x), size, replace=False)]
            ys = y if size == len(y) else y[rng.choice(len(y), size, replace=False)]
            values.append(_polynomial_mmd2(xs, ys, degree, gamma, coef0))
    array = np.array(values)
    std = float(array.std(ddof=1)) if len(array) > 1 else float("nan")
    return float(array.mean()), std


def zscore_with_reference(
    reference: np.ndarray, *others: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Z-score features with the reference set's mean/std, dropping reference-constant columns."""
    ref = _features(reference, "reference")
    mean, std = ref.mean(axis=0), ref.std(axis=0)
    keep = std > 1e-12 * np.maximum(1.0, np.abs(mean))
    if not keep.any():
        raise ConfigError("every feature is constant in the reference set; FRD is undefined")
    scale = lambda f: (np.asarray(f, np.float64)[:, keep] - mean[keep]) / std[keep]  # noqa: E731
    return scale(ref), [scale(o) for o in others]


def frd(reference: np.ndarray, other: np.ndarray) -> float:
    """Squared Fréchet radiomic distance ``d_F^2``: FD after z-scoring both sets with
    ``reference``'s statistics (see :func:`frd_log` for the reported value).

    >>> f = np.random.default_rng(0).normal(size=(100, 5)) * [1, 10, 100, 1000, 1e4]
    >>> round(frd(f, f), 9)
    0.0
    """
    ref, (oth,) = zscore_with_reference(reference, other)
    return fid(ref, oth)


def frd_log(squared_distance: float) -> float:
    """FRD as reported (FRDv1, ``frd-score``'s default): ``log(d_F^2)``; ``-inf`` for 0.

    >>> round(frd_log(100.0), 4)
    4.6052
    """
    return float(np.log(squared_distance)) if squared_distance > 0 else float("-inf")


def relative_fd(fd_synthetic_train: float, fd_heldout_train: float) -> float:
    """``FD(synthetic, train) / FD(held-out, train)`` (``inf`` when the denominator is 0).

    >>> relative_fd(12.0, 10.0)
    1.2
    """
    if fd_heldout_train <= 0:
        return float("inf")
    return fd_synthetic_train / fd_heldout_train


def triplanar_fid(
    real_volumes: np.ndarray,
    synthetic_volumes: np.ndarray,
    extractor: str = "inception",
    cache_dir: str | Path | None = None,
) -> dict[str, float]:
    """FID per central plane (axial, coronal, sagittal) of ``(N, C, D, H, W)`` volumes, and mean.

    >>> vols = np.random.default_rng(0).random((6, 1, 8, 8, 8))
    >>> result = triplanar_fid(vols, vols, extractor="radiomics-lite")
    >>> sorted(result), round(result["mean"], 6)
    (['axial', 'coronal', 'mean', 'sagittal'], 0.0)
    """
    from medisynth.metrics.features import extract_features, triplanar_slices

    result: dict[str, float] = {}
    real_planes = triplanar_slices(real_volumes)
    syn_planes = triplanar_slices(synthetic_volumes)
    for name in real_planes:
        real = extract_features(real_planes[name], extractor, cache_dir=cache_dir)
        syn = extract_features(syn_planes[name], extractor, cache_dir=cache_dir)
        result[name] = fid(real, syn)
    result["mean"] = float(np.mean([result[n] for n in real_planes]))
    return result
