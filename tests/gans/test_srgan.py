"""The srgan family: it starts at bicubic, learns to beat it, resumes exactly, works in 3D, and
rejects bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medisynth.config import RunConfig
from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo
from medisynth.gans.srgan import SRGAN, SRGANConfig
from medisynth.nets.srresnet import downsample, upsample
from medisynth.package import load_package
from medisynth.training.engine import train

TINY = {"g_channels": 16, "n_blocks": 2, "d_channels": 4, "d_layers": 2}


def blocky_images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Images of random axis-aligned rectangles, -1 / +1: sharp edges that interpolation blurs."""
    g = torch.Generator().manual_seed(seed)
    images = -torch.ones(n, 1, size, size)
    for image in images:
        for _ in range(2):
            y0, x0 = (int(v) for v in torch.randint(0, size - 4, (2,), generator=g))
            h, w = (int(v) for v in torch.randint(3, 9, (2,), generator=g))
            image[:, y0 : y0 + h, x0 : x0 + w] = 1.0
    return images


def test_untrained_generator_is_the_interpolation_baseline() -> None:
    gan = SRGAN.build(SRGANConfig(scale=4, **TINY), DataInfo(1, (16, 16)))
    hr = blocky_images(3)
    lr = gan.low_resolution(hr)
    assert lr.shape == (3, 1, 4, 4)
    assert torch.allclose(lr[:, :, 0, 0], hr[:, :, :4, :4].mean(dim=(2, 3)))  # area downsampling
    assert torch.allclose(gan.translate(lr), upsample(lr, 4))


def test_srgan_learns_to_beat_bicubic_on_a_toy_set() -> None:
    torch.manual_seed(0)
    gan = SRGAN.build(
        SRGANConfig(scale=2, **TINY, lr_g=3e-3, warmup_steps=20), DataInfo(1, (16, 16))
    )
    images = blocky_images(32)
    held_out = blocky_images(16, seed=1)
    lr_held = downsample(held_out, 2)
    bicubic = float((upsample(lr_held, 2).clamp(-1, 1) - held_out).abs().mean())
    before = float((gan.translate(lr_held) - held_out).abs().mean())
    losses = []
    for step in range(100):
        batch = images[(step * 8) % 32 : (step * 8) % 32 + 8]
        losses.append(gan.train_step({"image": batch}))
    after = float((gan.translate(lr_held).clamp(-1, 1) - held_out).abs().mean())
    assert set(losses[0]) == {"l1", "l1_interpolation"}  # warm-up: content loss only
    assert set(losses[-1]) == {"d_loss", "g_adv", "l1", "l1_interpolation"}
    first = sum(x["l1"] for x in losses[:4]) / 4
    last = sum(x["l1"] for x in losses[-4:]) / 4
    assert last < 0.7 * first, (first, last)
    assert abs(before - bicubic) < 0.05  # it started at the baseline ...
    assert after < 0.8 * bicubic, (bicubic, after)  # ... and now beats it on unseen images


def test_state_dict_round_trip_and_grid() -> None:
    torch.manual_seed(0)
    cfg = SRGANConfig(scale=2, **TINY, warmup_steps=1, perceptual_weight=1.0)
    gan = SRGAN.build(cfg, DataInfo(1, (16, 16)))
    for _ in range(3):
        losses = gan.train_step({"image": blocky_images(4)})
    assert losses["perceptual"] > 0
    other = SRGAN.build(cfg, DataInfo(1, (16, 16)))
    lr = downsample(blocky_images(2, seed=3), 2)
    assert not torch.equal(other.translate(lr), gan.translate(lr))
    other.load_state_dict(gan.state_dict())
    assert torch.equal(other.translate(lr), gan.translate(lr))
    assert other.steps_done == 3 and torch.equal(other.sample(2), gan.sample(2))
    grid, per_row = gan.sample_grid()  # interpolated, super-resolved, original
    assert grid.shape == (12, 1, 16, 16) and per_row == 4
    assert set(gan.inference_nets()) == {"generator"}


def test_3d_smoke_with_patches() -> None:
    torch.manual_seed(0)
    cfg = SRGANConfig(scale=2, g_channels=4, n_blocks=1, d_channels=4, d_layers=1, patch_size=8)
    gan = SRGAN.build(cfg, DataInfo(1, (12, 12, 12)))
    losses = gan.train_step({"image": torch.rand(2, 1, 12, 12, 12) * 2 - 1})
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert gan.grid_pairs["target"].shape == (2, 1, 8, 8, 8)  # the crops
    assert gan.translate(torch.zeros(1, 1, 3, 5, 4)).shape == (1, 1, 6, 10, 8)


def test_strict_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key 'model.latent_dim'"):
        RunConfig.from_dict({"model": {"family": "srgan", "latent_dim": 8}})
    with pytest.raises(ConfigError, match="model.scale"):
        RunConfig.from_dict({"model": {"family": "srgan", "scale": 3}})
    with pytest.raises(ConfigError, match="model.loss"):
        RunConfig.from_dict({"model": {"family": "srgan", "loss": "wgan-gp"}})
    with pytest.raises(ConfigError, match="divisible by 4"):
        SRGAN.build(SRGANConfig(scale=4, **TINY), DataInfo(1, (18, 16)))
    with pytest.raises(ConfigError, match="patch_size 10 must be divisible"):
        SRGAN.build(SRGANConfig(scale=4, **TINY, patch_size=10), DataInfo(1, (16, 16)))
    with pytest.raises(ConfigError, match="cannot sample from noise"):
        SRGAN.build(SRGANConfig(**TINY), DataInfo(1, (16, 16)), training=False).sample(1)
    gan = SRGAN.build(SRGANConfig(**TINY), DataInfo(1, (16, 16)))
    with pytest.raises(ConfigError, match="needs batches with 'image'"):
        gan.train_step({"label": torch.zeros(2)})


def test_engine_trains_on_medmnist_and_packages(tmp_path: Path, tiny_npz: Path) -> None:
    cfg = RunConfig.from_dict(
        {
            "data": {"format": "medmnist", "path": str(tiny_npz)},
            "model": {"family": "srgan", "scale": 2, **TINY},
            "train": {
                "steps": 3,
                "batch_size": 4,
                "progress": False,
                "tensorboard": False,
                "out_dir": str(tmp_path / "run"),
            },
        }
    )
    result = train(cfg)
    assert result.status == "completed" and result.package
    package = load_package(result.package)
    assert isinstance(package.family, SRGAN) and package.family.scale == 2
    assert package.data.intensity_map.high <= 255 and package.data.spatial_shape == (16, 16)
    assert (Path(result.out_dir) / "samples").is_dir()
