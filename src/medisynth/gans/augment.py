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

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medisynth.errors import ConfigError

AUGMENTATIONS: tuple[str, ...] = ("translation", "cutout")


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


def diff_augment(x: torch.Tensor, policy: Sequence[str]) -> torch.Tensor:
    """Apply the named augmentations in order (``"translation"``, ``"cutout"``)."""
    for name in policy:
        if name == "translation":
            x = random_translation(x)
        elif name == "cutout":
            x = random_cutout(x)
        else:
            raise ConfigError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
    return x
