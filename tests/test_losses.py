"""Style, LeCam and mode-seeking losses against NumPy; what the style loss ignores (layout); the
SSIM loss against scikit-image in 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from medisynth.losses import gram_matrix, lecam_penalty, mode_seeking_ratio, ssim_loss, style_loss


def numpy_gram(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    return np.einsum("ncv,ndv->ncd", flat, flat) / (flat.shape[1] * flat.shape[2])


def test_gram_matrix_matches_numpy_in_2d_and_3d() -> None:
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 5, 4), (2, 3, 4, 3, 2)]:
        x = rng.normal(size=shape)
        np.testing.assert_allclose(gram_matrix(torch.from_numpy(x)).numpy(), numpy_gram(x), 1e-5)


def test_style_loss_ignores_where_features_are_but_not_which_occur_together() -> None:
    torch.manual_seed(0)
    real = [torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3)]
    shuffled = [f.flatten(2)[:, :, torch.randperm(f[0, 0].numel())].reshape(f.shape) for f in real]
    assert float(style_loss(shuffled, real)) < 1e-10
    other = [f[:, torch.randperm(f.shape[1])] + torch.randn_like(f) for f in real]
    reference = np.mean(
        [
            np.mean((numpy_gram(o.double().numpy()) - numpy_gram(r.double().numpy())) ** 2)
            for o, r in zip(other, real, strict=True)
        ]
    )
    assert reference > 0.01
    assert np.isclose(float(style_loss(other, real)), reference, rtol=1e-4)


def test_lecam_penalty_matches_numpy_and_vanishes_inside_the_anchors() -> None:
    rng = np.random.default_rng(1)
    real, fake = rng.normal(0.5, 1, 64), rng.normal(-0.5, 1, 48)
    anchors = (0.4, -0.3)  # moving means of D on real and on fake images
    expected = np.mean(np.maximum(real - anchors[1], 0) ** 2) + np.mean(
        np.maximum(anchors[0] - fake, 0) ** 2
    )
    got = lecam_penalty(torch.from_numpy(real), torch.from_numpy(fake), *anchors)
    assert np.isclose(float(got), expected, rtol=1e-6) and expected > 0.1
    # real scores below the fake anchor and fake scores above the real anchor cost nothing
    assert float(lecam_penalty(torch.full((4,), -1.0), torch.full((4,), 1.0), *anchors)) == 0.0


def test_mode_seeking_ratio_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(2, 3, 5, 5))
    za, zb = rng.normal(size=(2, 7)), rng.normal(size=(2, 7))
    want = np.abs(a - b).mean() / np.abs(za - zb).mean()
    got = mode_seeking_ratio(*(torch.from_numpy(x) for x in (a, b, za, zb)))
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_ssim_loss_is_one_minus_scikit_image_ssim_in_2d_and_3d() -> None:
    """scikit-image's default SSIM (7-pixel uniform window, sample covariances) on [-1, 1]."""
    rng = np.random.default_rng(0)
    for shape in ((3, 1, 24, 20), (2, 1, 12, 10, 14)):
        target = rng.random(shape) * 2 - 1
        fake = np.clip(target + rng.normal(0, 0.3, shape), -1, 1)
        reference = [
            structural_similarity(f[0], t[0], data_range=2.0)
            for f, t in zip(fake, target, strict=True)
        ]
        loss = ssim_loss(torch.tensor(fake), torch.tensor(target))
        assert float(loss) == pytest.approx(1 - np.mean(reference), abs=1e-5), shape
