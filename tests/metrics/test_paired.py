"""SSIM, MS-SSIM, PSNR, MAE, NMSE checked against scikit-image and pytorch-msssim."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, normalized_root_mse, peak_signal_noise_ratio
from skimage.metrics import structural_similarity as sk_ssim

from medisynth.errors import ConfigError
from medisynth.metrics import paired

RNG = np.random.default_rng(0)
SK = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _noisy(shape: tuple[int, ...], scale: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    target = RNG.random(shape) * scale
    return np.clip(target + RNG.normal(0, 0.1 * scale, shape), 0, scale), target


@pytest.mark.parametrize("shape", [(3, 1, 30, 34), (2, 1, 14, 16, 18)])
def test_ssim_matches_skimage(shape: tuple[int, ...]) -> None:
    pred, target = _noisy(shape)
    ours = paired.ssim(pred, target, data_range=100.0)
    ref = [sk_ssim(t[0], p[0], data_range=100.0, **SK) for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(ours, ref, rtol=1e-9)


def test_ssim_multichannel_is_the_channel_mean_of_skimage() -> None:
    pred, target = _noisy((2, 3, 24, 24), 1.0)
    ref = [
        sk_ssim(t, p, data_range=1.0, channel_axis=0, **SK)
        for p, t in zip(pred, target, strict=True)
    ]
    np.testing.assert_allclose(paired.ssim(pred, target, 1.0), ref, rtol=1e-9)


def test_masked_ssim_averages_the_skimage_map_inside_the_mask() -> None:
    pred, target = _noisy((1, 1, 32, 32), 1.0)
    mask = np.zeros((1, 1, 32, 32), bool)
    mask[..., 8:20, 10:30] = True
    _, full = sk_ssim(target[0, 0], pred[0, 0], data_range=1.0, full=True, **SK)
    inner = (slice(5, -5), slice(5, -5))
    expected = full[inner][mask[0, 0][inner]].mean()
    assert paired.ssim(pred, target, 1.0, mask=mask)[0] == pytest.approx(expected, rel=1e-9)


def test_ms_ssim_matches_pytorch_msssim_2d() -> None:
    torch = pytest.importorskip("torch")
    msssim = pytest.importorskip("pytorch_msssim", reason="pytorch-msssim is not installed")
    pred, target = _noisy((2, 1, 176, 170), 1.0)
    ref = msssim.ms_ssim(torch.from_numpy(pred), torch.from_numpy(target), data_range=1.0,
                         size_average=False)  # fmt: skip
    # pytorch-msssim builds its window in float32: agreement to ~1e-5
    np.testing.assert_allclose(paired.ms_ssim(pred, target, 1.0), ref.numpy(), rtol=2e-5)


def test_ms_ssim_matches_pytorch_msssim_3d() -> None:
    torch = pytest.importorskip("torch")
    msssim = pytest.importorskip("pytorch_msssim", reason="pytorch-msssim is not installed")
    # a 3-tap window keeps 5 levels possible on small volumes (side > 2 * 16)
    pred, target = _noisy((2, 1, 36, 34, 38), 1.0)
    ref = msssim.ms_ssim(torch.from_numpy(pred), torch.from_numpy(target), data_range=1.0,
                         size_average=False, win_size=3)  # fmt: skip
    ours = paired.ms_ssim(pred, target, 1.0, win_size=3)
    np.testing.assert_allclose(ours, ref.numpy(), rtol=2e-5)


def test_ms_ssim_refuses_images_too_small_for_the_levels() -> None:
    pred, target = _noisy((1, 1, 64, 64), 1.0)
    with pytest.raises(ConfigError, match="levels"):
        paired.ms_ssim(pred, target, 1.0)
    assert 0 < paired.ms_ssim(pred, target, 1.0, levels=2)[0] < 1


@pytest.mark.parametrize("shape", [(3, 1, 20, 20), (2, 1, 6, 7, 8)])
def test_psnr_mae_nmse_match_skimage(shape: tuple[int, ...]) -> None:
    pred, target = _noisy(shape, 4095.0)
    psnr = [
        peak_signal_noise_ratio(t, p, data_range=4095.0) for p, t in zip(pred, target, strict=True)
    ]
    nmse = [
        normalized_root_mse(t, p, normalization="euclidean") ** 2
        for p, t in zip(pred, target, strict=True)
    ]
    mae = [np.mean(np.abs(p - t)) for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(paired.psnr(pred, target, 4095.0), psnr, rtol=1e-10)
    np.testing.assert_allclose(paired.nmse(pred, target), nmse, rtol=1e-10)
    np.testing.assert_allclose(paired.mae(pred, target), mae, rtol=1e-10)


def test_masked_psnr_uses_only_masked_pixels() -> None:
    pred, target = _noisy((2, 1, 16, 16), 1.0)
    mask = RNG.random((2, 16, 16)) > 0.5
    for i in range(2):
        p, t = pred[i, 0][mask[i]], target[i, 0][mask[i]]
        expected = 10 * np.log10(1.0 / mean_squared_error(t, p))
        assert paired.psnr(pred, target, 1.0, mask=mask)[i] == pytest.approx(expected)


def test_analytic_cases_and_bad_input() -> None:
    x = RNG.random((2, 1, 16, 16))
    assert paired.ssim(x, x, 1.0).tolist() == [1.0, 1.0]
    assert np.isinf(paired.psnr(x, x, 1.0)).all()
    assert paired.mae(x, x).tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="data_range"):
        paired.ssim(x, x, 0.0)
    with pytest.raises(ConfigError, match="shape"):
        paired.ssim(x, x[:1], 1.0)
    with pytest.raises(ConfigError, match="mask"):
        paired.psnr(x, x, 1.0, mask=np.zeros((2, 16, 16), bool))
    with pytest.raises(ConfigError, match="unknown"):
        paired.paired_metrics(x, x, 1.0, metrics=("lpips",))


def test_paired_metrics_summary() -> None:
    pred, target = _noisy((3, 1, 48, 48), 1.0)
    out = paired.paired_metrics(pred, target, data_range=1.0)
    assert out["ssim"]["mean"] == pytest.approx(np.mean(paired.ssim(pred, target, 1.0)))
    assert out["ms_ssim_levels"] == 3 and out["ms_ssim"]["per_image"]
    masked = paired.paired_metrics(pred, target, 1.0, mask=np.ones((3, 48, 48), bool))
    assert masked["ms_ssim"] is None
