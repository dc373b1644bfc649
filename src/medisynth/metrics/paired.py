"""Paired quality for translation and enhancement: SSIM, MS-SSIM, PSNR, MAE, NMSE (2D and 3D).

Inputs are ``(N, C, H, W)`` or ``(N, C, D, H, W)`` arrays, ``pred`` against ``target``, and every
intensity-dependent metric takes an explicit ``data_range`` (max - min of the intensity scale,
e.g. 1.0 for images in [0, 1], 4095 for 12-bit CT): it is never guessed. Each function returns one
value per image (channels averaged).

- SSIM: Gaussian window (11 taps, sigma 1.5), K1 = 0.01, K2 = 0.03, population statistics, the SSIM
  map averaged over the *valid* region (the border of half a window is left out), exactly as
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``. Volumes use a 3D window. With a mask, the map is averaged over
  the mask's pixels inside the valid region.
- MS-SSIM: the pytorch-msssim convention (5 scales, weights 0.0448 ... 0.1333, 2x average pooling,
  ReLU on contrast terms); fewer ``levels`` use the first weights renormalised, for small images
  (5 scales need a smallest side > 160 pixels).
- PSNR ``10 log10(data_range^2 / MSE)``, MAE, NMSE ``sum (pred - target)^2 / sum target^2``; inside
  the mask when one is given.

>>> import numpy as np
>>> x = np.random.default_rng(0).random((2, 1, 32, 32))
>>> ssim(x, x, data_range=1.0).tolist(), psnr(x, x * 0.5, data_range=1.0).round(2).tolist()
([1.0, 1.0], [10.62, 10.99])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medisynth.errors import ConfigError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM = "ssim"
MS_SSIM = "ms_ssim"
PSNR = "psnr"
MAE = "mae"
NMSE = "nmse"
ALL = (SSIM, MS_SSIM, PSNR, MAE, NMSE)


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise ConfigError(f"pred has shape {pred.shape} but target {target.shape}")
    if pred.ndim not in (4, 5):
        raise ConfigError(f"images must be (N, C, H, W) or (N, C, D, H, W), got {pred.shape}")
    return pred, target


def _mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask).astype(bool)
    if mask.ndim == len(shape) - 1:  # (N, H, W): one mask for all channels
        mask = mask[:, None]
    try:
        mask = np.broadcast_to(mask, shape)
    except ValueError:
        raise ConfigError(f"mask shape {np.shape(mask)} does not fit images {shape}") from None
    if not mask.reshape(shape[0], -1).any(axis=1).all():
        raise ConfigError("the mask is empty for at least one image")
    return mask


def _check_range(data_range: float) -> float:
    if not data_range or data_range <= 0 or not np.isfinite(data_range):
        raise ConfigError(f"data_range must be a positive number, got {data_range}")
    return float(data_range)


def _gaussian_filter(x: torch.Tensor, win_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter, 'valid' region only, on (B, 1, *spatial) float64."""
    coords = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    spatial = x.ndim - 2
    conv = F.conv2d if spatial == 2 else F.conv3d
    for axis in range(spatial):
        shape = [1, 1] + [1] * spatial
        shape[2 + axis] = win_size
        x = conv(x, g.reshape(shape))
    return x


def _ssim_maps(
    x: torch.Tensor, y: torch.Tensor, data_range: float, win_size: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps (valid region) of (B, 1, *spatial) tensors."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    stacked = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y]), win_size, sigma)
    mu_x, mu_y, xx, yy, xy = stacked.chunk(5)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return luminance * cs, cs


def _flat_channels(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.reshape(-1, 1, *a.shape[2:])))


def ssim(
    pred: np.ndarray,
    target: np.ndarray,
    data_range: float,
    mask: np.ndarray | None = None,
    win_size: int = 11,
    sigma: float = 1.5,
) -> np.ndarray:
    """Structural similarity per image (channels averaged), Gaussian window, valid region."""
    pred, target = _pair(pred, target)
    data_range = _check_range(data_range)
    n, c, *spatial = pred.shape
    if min(spatial) < win_size:
        raise ConfigError(f"images of size {tuple(spatial)} are smaller than the window {win_size}")
    with torch.no_grad():
        s_map, _ = _ssim_maps(
            _flat_channels(pred), _flat_channels(target), data_range, win_size, sigma
        )
    s = s_map.numpy().reshape(n, c, *s_map.shape[2:])
    m = _mask(mask, pred.shape)
    if m is None:
        return s.reshape(n, c, -1).mean(axis=2).mean(axis=1)
    pad = (win_size - 1) // 2
    crop = (slice(None), slice(None)) + tuple(slice(pad, size - pad) for size in spatial)
    m = m[crop]
    values = [s[i][m[i]].mean() if m[i].any() else np.nan for i in range(n)]
    return np.array(values, np.float64)


def ms_ssim(
    pred: np.ndarray,
    target: np.ndarray,
    data_range: float,
    levels: int = 5,
    win_size: int = 11,
    sigma: float = 1.5,
) -> np.ndarray:
    """Multi-scale SSIM per image (pytorch-msssim convention), 2D or 3D."""
    pred, target = _pair(pred, target)
    data_range = _check_range(data_range)
    if not 1 <= levels <= len(MS_SSIM_WEIGHTS):
        raise ConfigError(f"levels must be 1..{len(MS_SSIM_WEIGHTS)}, got {levels}")
    n, c, *spatial = pred.shape
    need = (win_size - 1) * 2 ** (levels - 1)
    if min(spatial) <= need:
        raise ConfigError(
            f"MS-SSIM with {levels} levels needs images larger than {need} pixels per side "
            f"(got {tuple(spatial)}); use fewer levels"
        )
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=torch.float64)
    weights = weights / weights.sum()
    pool = F.avg_pool2d if len(spatial) == 2 else F.avg_pool3d
    x, y = _flat_channels(pred), _flat_channels(target)
    terms = []
    with torch.no_grad():
        for level in range(levels):
            s_map, cs_map = _ssim_maps(x, y, data_range, win_size, sigma)
            if level < levels - 1:
                terms.append(torch.relu(cs_map.flatten(1).mean(1)))
                padding = [s % 2 for s in x.shape[2:]]
                x = pool(x, kernel_size=2, padding=padding)
                y = pool(y, kernel_size=2, padding=padding)
        terms.append(torch.relu(s_map.flatten(1).mean(1)))
        value = torch.prod(torch.stack(terms) ** weights[:, None], dim=0)
    return value.numpy().reshape(n, c).mean(axis=1)


def _masked_errors(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    m = _mask(mask, pred.shape)
    if m is None:
        return [(p.ravel(), t.ravel()) for p, t in zip(pred, target, strict=True)]
    return [(p[k], t[k]) for p, t, k in zip(pred, target, m, strict=True)]


def psnr(
    pred: np.ndarray, target: np.ndarray, data_range: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """Peak signal-to-noise ratio (dB) per image; ``inf`` for identical images."""
    pred, target = _pair(pred, target)
    data_range = _check_range(data_range)
    out = []
    for p, t in _masked_errors(pred, target, mask):
        mse = np.mean((p - t) ** 2)
        out.append(np.inf if mse == 0 else 10.0 * np.log10(data_range**2 / mse))
    return np.array(out, np.float64)


def mae(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean absolute error per image (in the images' units)."""
    pred, target = _pair(pred, target)
    return np.array([np.abs(p - t).mean() for p, t in _masked_errors(pred, target, mask)])


def nmse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalised MSE per image: ``sum (pred - target)^2 / sum target^2``."""
    pred, target = _pair(pred, target)
    out = []
    for p, t in _masked_errors(pred, target, mask):
        energy = (t**2).sum()
        out.append(np.inf if energy == 0 else ((p - t) ** 2).sum() / energy)
    return np.array(out, np.float64)


def paired_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    data_range: float,
    mask: np.ndarray | None = None,
    metrics: tuple[str, ...] = ALL,
    ms_ssim_levels: int | None = None,
) -> dict[str, Any]:
    """Mean, std and per-image values of each paired metric, plus the ``data_range`` used.

    MS-SSIM uses as many levels as the image size allows (at most 5) unless
    ``ms_ssim_levels`` is given; it is skipped (reported as None) inside a mask and for images
    too small for one level above plain SSIM.

    >>> x = np.random.default_rng(0).random((3, 1, 24, 24))
    >>> out = paired_metrics(x, x, data_range=1.0)
    >>> out["ssim"]["mean"], out["mae"]["mean"], out["data_range"]
    (1.0, 0.0, 1.0)
    """
    unknown = set(metrics) - set(ALL)
    if unknown:
        raise ConfigError(f"unknown paired metric(s) {sorted(unknown)}; known: {', '.join(ALL)}")
    pred, target = _pair(pred, target)
    out: dict[str, Any] = {"data_range": _check_range(data_range), "n": len(pred)}
    smallest = min(pred.shape[2:])
    for name in metrics:
        values: np.ndarray | None
        if name == SSIM:
            values = ssim(pred, target, data_range, mask)
        elif name == MS_SSIM:
            levels = ms_ssim_levels or max(
                (lv for lv in range(1, 6) if smallest > 10 * 2 ** (lv - 1)), default=0
            )
            values = (
                None
                if mask is not None or levels < 2
                else ms_ssim(pred, target, data_range, levels)
            )
            out["ms_ssim_levels"] = None if values is None else levels
        elif name == PSNR:
            values = psnr(pred, target, data_range, mask)
        elif name == MAE:
            values = mae(pred, target, mask)
        else:
            values = nmse(pred, target, mask)
        if values is None:
            out[name] = None
            continue
        with np.errstate(invalid="ignore"):  # PSNR of identical images is inf
            out[name] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "per_image": [float(v) for v in values],
            }
    return out
