"""pix2pix as a mask -> image model: it learns a toy label map -> image mapping, its noise
channels give several images of one mask, and its new settings are checked strictly."""

from __future__ import annotations

import pytest
import torch

from medisynth.config import RunConfig
from medisynth.data.masks import one_hot
from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo
from medisynth.gans.pix2pix import Pix2Pix, Pix2PixConfig

TINY = {"g_channels": 8, "g_depth": 2, "d_channels": 8, "d_layers": 2}


def toy_masks(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Label maps of random rectangles: 0 background, 1 and 2 two kinds of object."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, size, size, dtype=torch.int64)
    for i in range(n):
        for label in (1, 2):
            top, left = (int(v) for v in torch.randint(0, size - 6, (2,), generator=g))
            labels[i, top : top + 6, left : left + 6] = label
    return labels


def toy_images(labels: torch.Tensor) -> torch.Tensor:
    """The image of a label map: background -0.8, object 1 at 0.0, object 2 at 0.8."""
    levels = torch.tensor([-0.8, 0.0, 0.8])
    return levels[labels][:, None]


def test_learns_a_label_map_to_image_mapping() -> None:
    torch.manual_seed(0)
    data = DataInfo(channels=1, spatial_shape=(16, 16), source_channels=3, mask_labels=3)
    cfg = Pix2PixConfig(**TINY, noise_channels=1, diversity_weight=0.1, lr_g=2e-3)
    gan = Pix2Pix.build(cfg, data)
    labels, held_out = toy_masks(32), toy_masks(8, seed=1)
    source, target = one_hot(labels, 3), toy_images(labels)

    def error() -> float:
        return float((gan.translate(one_hot(held_out, 3)) - toy_images(held_out)).abs().mean())

    before, l1 = error(), []
    for step in range(30):
        part = slice((step * 8) % 32, (step * 8) % 32 + 8)
        losses = gan.train_step({"source": source[part], "target": target[part]})
        l1.append(losses["l1"])
    assert set(losses) == {"d_loss", "g_adv", "l1", "diversity"} and losses["diversity"] > 0
    assert sum(l1[-5:]) < 0.5 * sum(l1[:5]), l1
    assert error() < 0.5 * before, (before, error())


def test_noise_gives_different_images_of_one_mask_and_a_seed_repeats_them() -> None:
    torch.manual_seed(0)
    data = DataInfo(channels=1, spatial_shape=(16, 16), source_channels=3, mask_labels=3)
    gan = Pix2Pix.build(Pix2PixConfig(**TINY, noise_channels=2), data)
    mask = one_hot(toy_masks(1), 3).repeat(2, 1, 1, 1)  # one mask, twice

    def draw(seed: int) -> torch.Tensor:
        return gan.translate(mask, generator=torch.Generator().manual_seed(seed))

    first, again, other = draw(1), draw(1), draw(2)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-3)
    assert not torch.allclose(first[0], first[1], atol=1e-3)  # fresh noise per image
    # smooth noise (noise_cell): the noise map is interpolated from 4-pixel cells
    smooth = Pix2Pix.build(Pix2PixConfig(**TINY, noise_channels=1, noise_cell=4), data)
    maps = smooth.with_noise(mask, torch.Generator().manual_seed(0))[:, -1]
    speckle = gan.with_noise(mask, torch.Generator().manual_seed(0))[:, -1]
    assert maps.shape == speckle.shape == (2, 16, 16)

    def roughness(noise: torch.Tensor) -> float:  # neighbour differences relative to spread
        return float((noise[:, :, 1:] - noise[:, :, :-1]).abs().mean() / noise.std())

    assert roughness(maps) < 0.5 * roughness(speckle)
    assert not torch.allclose(
        smooth.translate(mask, generator=torch.Generator().manual_seed(1)),
        smooth.translate(mask, generator=torch.Generator().manual_seed(2)),
    )
    # without noise channels the translation is deterministic
    plain = Pix2Pix.build(Pix2PixConfig(**TINY), data)
    assert torch.equal(plain.translate(mask[:1]), plain.translate(mask[:1]))


def test_strict_settings() -> None:
    with pytest.raises(ConfigError, match="did you mean 'noise_channels'"):
        RunConfig.from_dict({"model": {"family": "pix2pix", "noise_channel": 1}})
    with pytest.raises(ConfigError, match="model.noise_channels"):
        RunConfig.from_dict({"model": {"family": "pix2pix", "noise_channels": -1}})
    with pytest.raises(ConfigError, match="diversity_weight needs model.noise_channels"):
        Pix2Pix.build(Pix2PixConfig(**TINY, diversity_weight=1.0), DataInfo(1, (16, 16)))
    with pytest.raises(ConfigError, match="data.format"):
        RunConfig.from_dict({"data": {"format": "image_masks"}})
    with pytest.raises(ConfigError, match="mask_labels"):
        RunConfig.from_dict({"data": {"format": "image_mask", "mask_labels": 3}})
