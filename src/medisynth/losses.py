"""Adversarial losses and regularisers.

Discriminator outputs are raw logits/scores of shape ``(N,)`` or ``(N, 1)``.

>>> import torch
>>> real, fake = torch.tensor([2.0, 1.5]), torch.tensor([-2.0, -1.0])
>>> round(discriminator_loss("hinge", real, fake).item(), 4)
0.0
>>> generator_loss("wgan-gp", fake).item()
1.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import ConfigError

AdversarialLoss = Literal["bce", "lsgan", "hinge", "wgan-gp"]
ADVERSARIAL_LOSSES: tuple[str, ...] = ("bce", "lsgan", "hinge", "wgan-gp")


def _check(kind: str) -> None:
    if kind not in ADVERSARIAL_LOSSES:
        raise ConfigError(f"unknown loss {kind!r}; known losses: {', '.join(ADVERSARIAL_LOSSES)}")


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Loss of the discriminator given its outputs on real and on generated images."""
    _check(kind)
    real, fake = real.float(), fake.float()
    if kind == "bce":  # -log sigmoid(r) - log(1 - sigmoid(f)), in the stable softplus form
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "lsgan":
        return 0.5 * ((real - 1.0).pow(2).mean() + fake.pow(2).mean())
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return fake.mean() - real.mean()  # wgan-gp (the penalty is added separately)


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Loss of the generator given the discriminator's outputs on generated images."""
    _check(kind)
    fake = fake.float()
    if kind == "bce":  # the non-saturating form
        return F.softplus(-fake).mean()
    if kind == "lsgan":
        return 0.5 * (fake - 1.0).pow(2).mean()
    return -fake.mean()  # hinge and wgan-gp


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad D(x_hat)|| - 1)^2]`` on random interpolates of real and fake.

    >>> import torch
    >>> critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1))
    >>> gp = gradient_penalty(critic, torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2))
    >>> bool(gp >= 0)
    True
    """
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed) if labels is None else critic(mixed, labels)
    (grad,) = torch.autograd.grad(scores.float().sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


def r1_penalty(real_scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 penalty ``E[||grad D(x_real)||^2] / 2``; ``real`` must have ``requires_grad=True``."""
    (grad,) = torch.autograd.grad(real_scores.float().sum(), real, create_graph=True)
    return 0.5 * grad.flatten(1).pow(2).sum(dim=1).mean()


def lecam_penalty(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, real_anchor: float, fake_anchor: float
) -> torch.Tensor:
    """LeCam regulariser (Tseng et al., CVPR 2021) for GANs on little data:
    ``E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2]``, where the anchors are moving
    averages of D's mean output on real and on generated images. It keeps D's outputs on real
    and fake images from drifting apart (the sign of D memorising a small training set).

    >>> import torch
    >>> lecam_penalty(torch.tensor([2.0, 0.0]), torch.tensor([-1.0]), 1.0, -1.0).item()
    9.0
    """
    real, fake = real_scores.float(), fake_scores.float()
    return F.relu(real - fake_anchor).pow(2).mean() + F.relu(real_anchor - fake).pow(2).mean()


def mode_seeking_ratio(
    fake_a: torch.Tensor, fake_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor
) -> torch.Tensor:
    """Mode-seeking ratio (Mao et al., CVPR 2019) ``mean|G(z_a) - G(z_b)| / mean|z_a - z_b|``
    for two outputs of one condition. A generator that ignores its noise scores ~0; the
    mode-seeking loss adds ``weight / (ratio + 1e-5)`` to the generator's loss.

    >>> import torch
    >>> a, b = torch.zeros(2, 4), torch.ones(2, 4)
    >>> mode_seeking_ratio(a, b, torch.zeros(2, 3), torch.full((2, 3), 2.0)).item()
    0.5
    """
    return (fake_a.float() - fake_b.float()).abs().mean() / (z_a - z_b).abs().float().mean()


def feature_matching_loss(
    fake_features: Sequence[torch.Tensor], real_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """MedGAN's perceptual loss: mean L1 distance between a discriminator's features on the
    generated and the real input, averaged over layers.

    >>> a = [torch.zeros(2, 3), torch.ones(2, 4)]
    >>> float(feature_matching_loss(a, [torch.ones(2, 3), torch.ones(2, 4)]))
    0.5
    """
    distances = [
        (f.float() - r.float()).abs().mean()
        for f, r in zip(fake_features, real_features, strict=True)
    ]
    return torch.stack(distances).mean()


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel correlations ``F F^T / (C * voxels)`` of ``(N, C, *spatial)`` features: (N, C, C).

    They keep which features occur together and drop where: the texture, not the layout.

    >>> gram_matrix(torch.ones(1, 2, 3, 3)).tolist()
    [[[0.5, 0.5], [0.5, 0.5]]]
    """
    flat = features.float().flatten(2)
    return flat @ flat.transpose(1, 2) / (flat.shape[1] * flat.shape[2])


def style_loss(
    fake_features: Sequence[torch.Tensor], real_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """MedGAN's style loss: squared distance between the Gram matrices of the generated and the
    real image's features (mean over entries, then over layers; Gatys et al. 2016).

    >>> a, b = [torch.ones(1, 2, 4, 4)], [torch.zeros(1, 2, 4, 4)]
    >>> float(style_loss(a, a)), float(style_loss(a, b))
    (0.0, 0.25)
    """
    distances = [
        (gram_matrix(f) - gram_matrix(r)).pow(2).mean()
        for f, r in zip(fake_features, real_features, strict=True)
    ]
    return torch.stack(distances).mean()


SSIM_WINDOW = 7  # scikit-image's default window (uniform, 7 pixels a side)


def ssim_loss(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` of images in [-1, 1], 2D or 3D, in float32: scikit-image's default SSIM
    (uniform 7-pixel window, sample covariances, K1 = 0.01, K2 = 0.03) over the valid region,
    with average pooling for the window means (fast on a CPU, unlike a Gaussian filter). An L1
    loss alone is minimised by the conditional mean, a blurred image; this term rewards local
    contrast and structure.

    >>> x = torch.rand(2, 1, 16, 16) * 2 - 1
    >>> float(ssim_loss(x, x)), float(ssim_loss(torch.zeros_like(x), x)) > 0.9  # flat: no structure
    (0.0, True)
    """
    pool = F.avg_pool2d if fake.ndim == 4 else F.avg_pool3d
    x, y = fake.float(), target.float()
    c1, c2 = (0.01 * 2.0) ** 2, (0.03 * 2.0) ** 2
    means = pool(torch.cat([x, y, x * x, y * y, x * y], 1), SSIM_WINDOW, 1)
    mu_x, mu_y, xx, yy, xy = means.chunk(5, 1)
    n = SSIM_WINDOW ** (fake.ndim - 2)
    sample = n / (n - 1)  # scikit-image's use_sample_covariance=True
    var_x, var_y = (xx - mu_x**2) * sample, (yy - mu_y**2) * sample
    cov = (xy - mu_x * mu_y) * sample
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return 1 - (luminance * (2 * cov + c2) / (var_x + var_y + c2)).mean()
