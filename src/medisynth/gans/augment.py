"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for data-efficient GAN training.

The same kind of random transform is applied to real and generated images before the
discriminator sees them, so D cannot memorise the few real images and G still gets gradients.
Every function works on ``(N, C, *spatial)`` batches of any number of spatial axes.

>>> import torch
>>> x = torch.ones(4, 1, 8, 8)
>>> diff_augment(x, ["translation", "cutout"]).shape
torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medisynth.errors import ConfigError

AUGMENTATIONS: tuple[str, ...] = ("flip", "color", "translation", "cutout")
PAIR_AUGMENTATIONS: tuple[str, ...] = ("flip", "gamma", "blur", "noise")


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image along its last axis with probability 1/2 (left-right; StyleGAN2-ADA's
    ``xflip``): for anatomy without a handedness in the image, twice the distinct real images."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip.view((-1,) + (1,) * (x.ndim - 1)), x.flip(-1), x)


def random_translation(x: torch.Tensor, ratio: float = 0.125, fill: float = -1.0) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size along every axis, filling with ``fill``."""
    out = x
    n = x.shape[0]
    for axis in range(2, x.ndim):
        size = x.shape[axis]
        limit = int(size * ratio + 0.5)
        if limit == 0:
            continue
        shift = torch.randint(-limit, limit + 1, (n,), device=x.device)
        pad = [0, 0] * (x.ndim - 2)
        pad[2 * (x.ndim - 1 - axis)] = limit
        pad[2 * (x.ndim - 1 - axis) + 1] = limit
        padded = F.pad(out, pad, value=fill)
        index = torch.arange(size, device=x.device)[None, :] - shift[:, None] + limit  # (n, size)
        view = [n] + [1] * (x.ndim - 1)
        view[axis] = size
        index = index.view(view).expand(
            *[s if i != axis else size for i, s in enumerate(padded.shape)]
        )
        out = padded.gather(axis, index)
    return out


def random_cutout(x: torch.Tensor, ratio: float = 0.5, fill: float = 0.0) -> torch.Tensor:
    """Replace a box of ``ratio`` times the image size, at a random place per image, by ``fill``."""
    n = x.shape[0]
    inside = torch.ones((n,) + (1,) * (x.ndim - 1), dtype=torch.bool, device=x.device)
    for axis in range(2, x.ndim):
        size = x.shape[axis]
        box = int(size * ratio + 0.5)
        centre = torch.randint(0, size + (1 - box % 2), (n,), device=x.device)
        start = (centre - box // 2).view((n,) + (1,) * (x.ndim - 1))
        shape = [1] * x.ndim
        shape[axis] = size
        coords = torch.arange(size, device=x.device).view(shape)
        inside = inside & (coords >= start) & (coords < start + box)
    return torch.where(inside, torch.full_like(x, fill), x)


def random_color(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment's colour transform, per image: brightness + U(-0.5, 0.5), saturation (with
    more than one channel) x U(0, 2) around the pixel's channel mean, contrast x U(0.5, 1.5)
    around the image mean."""
    n = x.shape[0]
    view = (n,) + (1,) * (x.ndim - 1)
    x = x + (torch.rand(view, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(view, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return (x - mean) * (torch.rand(view, device=x.device, dtype=x.dtype) + 0.5) + mean


def diff_augment(x: torch.Tensor, policy: Sequence[str]) -> torch.Tensor:
    """Apply the named augmentations in order (``"flip"``, ``"color"``, ``"translation"``,
    ``"cutout"``)."""
    for name in policy:
        if name == "flip":
            x = random_flip(x)
        elif name == "color":
            x = random_color(x)
        elif name == "translation":
            x = random_translation(x)
        elif name == "cutout":
            x = random_cutout(x)
        else:
            raise ConfigError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
    return x


def random_gamma(x: torch.Tensor, max_gamma: float = 1.5) -> torch.Tensor:
    """Raise each image, mapped from [-1, 1] to [0, 1], to a random power in ``[1/max_gamma,
    max_gamma]`` (log-uniform): a contrast change that keeps the background (-1) and the
    brightest value (1) where they are, as between two scanners' renderings of one tissue."""
    n = x.shape[0]
    log_gamma = (torch.rand((n,) + (1,) * (x.ndim - 1), device=x.device) * 2 - 1) * math.log(
        max_gamma
    )
    unit = ((x.float() + 1) / 2).clamp(0, 1)
    return (unit ** log_gamma.exp() * 2 - 1).to(x.dtype)


def random_blur(x: torch.Tensor, max_sigma: float = 1.5) -> torch.Tensor:
    """Gaussian blur with one random sigma in ``[0, max_sigma]`` pixels for the whole batch (a
    thicker slice or a lower resolution than the training scan's); every spatial axis."""
    sigma = float(torch.rand(())) * max_sigma
    if sigma < 0.3:
        return x
    radius = int(3 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = x.shape[1]
    conv = F.conv2d if x.ndim == 4 else F.conv3d
    out = x
    for axis in range(2, x.ndim):
        shape = [1, 1] + [1] * (x.ndim - 2)
        shape[axis] = kernel.numel()
        pad = [0, 0] * (x.ndim - 2)
        pad[2 * (x.ndim - 1 - axis) : 2 * (x.ndim - axis)] = [radius, radius]
        out = F.pad(out, pad, mode="replicate")  # edges keep their value (the background)
        out = conv(out, kernel.view(shape).expand(channels, *shape[1:]), groups=channels)
    return out


def random_noise(x: torch.Tensor, max_std: float = 0.1) -> torch.Tensor:
    """Gaussian noise of a random strength per image (up to ``max_std`` of the [-1, 1] range)
    inside the foreground (> -1); the background stays -1."""
    n = x.shape[0]
    std = torch.rand((n,) + (1,) * (x.ndim - 1), device=x.device) * max_std
    noisy = (x + torch.randn_like(x) * std).clamp(-1, 1)
    return torch.where(x > -1, noisy, x)


def augment_pair(
    source: torch.Tensor, target: torch.Tensor, policy: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment paired training images: ``"flip"`` mirrors source and target together along the
    last axis (left-right in a radiological or neurological slice); ``"gamma"``, ``"blur"`` and
    ``"noise"`` change the source only (:func:`random_gamma`, :func:`random_blur`,
    :func:`random_noise`), so the model learns a mapping that does not hinge on one scan's
    intensity curve, sharpness or noise level.

    >>> import torch
    >>> s, t = torch.rand(2, 1, 4, 4) * 2 - 1, torch.rand(2, 1, 4, 4)
    >>> [a.shape for a in augment_pair(s, t, ["flip", "gamma"])]
    [torch.Size([2, 1, 4, 4]), torch.Size([2, 1, 4, 4])]
    """
    for name in policy:
        if name == "flip":  # one draw per pair: source and target mirrored together
            both = random_flip(torch.cat([source, target], dim=1))
            source, target = both.split([source.shape[1], target.shape[1]], dim=1)
        elif name == "gamma":
            source = random_gamma(source)
        elif name == "blur":
            source = random_blur(source)
        elif name == "noise":
            source = random_noise(source)
        else:
            raise ConfigError(
                f"unknown pair augmentation {name!r}; known: {', '.join(PAIR_AUGMENTATIONS)}"
            )
    return source, target
