"""The pix2pix family: it learns a known mapping, resumes exactly, and rejects bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medisynth.config import RunConfig
from medisynth.errors import ConfigError
from medisynth.export.nifti import write_nifti
from medisynth.gans.augment import augment_pair, random_blur
from medisynth.gans.base import DataInfo
from medisynth.gans.pix2pix import Pix2Pix, Pix2PixConfig
from medisynth.metrics.paired import ssim
from medisynth.package import load_package
from medisynth.training.engine import train

TINY = {"g_channels": 8, "g_depth": 2, "d_channels": 4, "d_layers": 2}


def smooth_images(n: int, size: int = 16, dims: int = 2, seed: int = 0) -> torch.Tensor:
    """Blurry random images in [-1, 1] (easy to translate, unlike white noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, *(4,) * dims, generator=g) * 2 - 1
    mode = "bilinear" if dims == 2 else "trilinear"
    return torch.nn.functional.interpolate(low, size=(size,) * dims, mode=mode)


def test_pix2pix_learns_target_equals_one_minus_source() -> None:
    """target = 1 - source in [0, 1] units is target = -source in [-1, 1]."""
    torch.manual_seed(0)
    data = DataInfo(channels=1, spatial_shape=(16, 16))
    gan = Pix2Pix.build(Pix2PixConfig(**TINY, lr_g=2e-3), data)
    images = smooth_images(32)
    held_out = smooth_images(8, seed=1)
    before = float((gan.translate(held_out) + held_out).abs().mean())
    for step in range(20):
        batch = images[(step * 8) % 32 : (step * 8) % 32 + 8]
        losses = gan.train_step({"source": batch, "target": -batch})
    after = float((gan.translate(held_out) + held_out).abs().mean())
    assert set(losses) == {"d_loss", "g_adv", "l1"}
    assert after < 0.5 * before, (before, after)


def test_pair_augmentation_flips_both_and_changes_only_the_source_contrast() -> None:
    torch.manual_seed(0)
    source = torch.linspace(-1, 1, 16).view(1, 1, 1, 16).repeat(64, 1, 16, 1)
    target = source * 0.5
    flipped_s, flipped_t = augment_pair(source, target, ["flip"])
    flipped = flipped_s[:, 0, 0, 0] > 0  # the ramp now starts high
    assert 10 < int(flipped.sum()) < 54
    assert torch.equal(flipped_t, flipped_s * 0.5)  # the pair stays aligned
    contrast_s, contrast_t = augment_pair(source, target, ["gamma"])
    assert torch.equal(contrast_t, target)
    assert torch.allclose(contrast_s[..., 0], source[..., 0])  # background stays -1
    assert torch.allclose(contrast_s[..., -1], source[..., -1])  # the maximum stays 1
    assert (contrast_s.diff(dim=-1) > 0).all()  # a monotone curve: no contrast inversion
    middle = contrast_s[:, 0, 0, 8]
    assert float(middle.std()) > 0.05  # a different curve per image
    with pytest.raises(ConfigError, match="known: flip, gamma, blur, noise"):
        augment_pair(source, target, ["rotate"])


@pytest.mark.parametrize("dims", [2, 3])
def test_blur_and_noise_touch_only_the_source_foreground(dims: int) -> None:
    torch.manual_seed(0)
    source = -torch.ones(4, 1, *(16,) * dims)
    inner = (slice(None), slice(None)) + (slice(6, 10),) * dims
    source[inner] = torch.rand(source[inner].shape)
    target = source.clone()
    blurred = torch.stack([random_blur(source, max_sigma=1.5) for _ in range(20)])
    assert (blurred != source).any()  # at least one draw blurs (sigma >= 0.3)
    # a blur moves intensity around but keeps its sum; the far background stays -1
    assert torch.allclose(blurred.flatten(2).mean(-1), source.flatten(1).mean(-1), atol=1e-5)
    assert torch.allclose(blurred[..., 0], torch.tensor(-1.0), atol=1e-6)
    noisy_s, noisy_t = augment_pair(source, target, ["noise"])
    assert torch.equal(noisy_t, target)
    background = source == -1
    assert torch.equal(noisy_s[background], source[background])
    assert (noisy_s[~background] != source[~background]).any()


def test_augmented_training_still_learns_the_mapping() -> None:
    torch.manual_seed(0)
    data = DataInfo(channels=1, spatial_shape=(16, 16))
    gan = Pix2Pix.build(Pix2PixConfig(**TINY, lr_g=2e-3, augment=["flip"]), data)
    images = smooth_images(32)
    held_out = smooth_images(8, seed=1)
    before = float((gan.translate(held_out) + held_out).abs().mean())
    for step in range(20):
        batch = images[(step * 8) % 32 : (step * 8) % 32 + 8]
        gan.train_step({"source": batch, "target": -batch})
    after = float((gan.translate(held_out) + held_out).abs().mean())
    assert after < 0.5 * before, (before, after)


def test_perceptual_and_style_losses_and_3d() -> None:
    torch.manual_seed(0)
    data = DataInfo(channels=1, spatial_shape=(8, 8, 8), source_channels=2)
    cfg = Pix2PixConfig(
        g_channels=4, g_depth=2, d_channels=4, d_layers=1, perceptual_weight=1.0, style_weight=1.0
    )
    gan = Pix2Pix.build(cfg, data)
    batch = {"source": torch.rand(2, 2, 8, 8, 8) * 2 - 1, "target": torch.rand(2, 1, 8, 8, 8)}
    losses = gan.train_step(batch)
    assert losses["perceptual"] > 0 and losses["style"] > 0
    assert gan.translate(batch["source"]).shape == (2, 1, 8, 8, 8)
    grid, per_row = gan.sample_grid()  # channels differ: translations and targets only
    assert grid.shape == (4, 1, 8, 8, 8) and per_row == 2
    with pytest.raises(ConfigError, match=r"translates \(2, \?, \?, \?\) images"):
        gan.translate(torch.zeros(1, 1, 8, 8, 8))


def test_ssim_loss_alone_teaches_the_structure() -> None:
    """With the L1 weight at 0, the SSIM term drives the translation towards the target's
    structure on held-out images; the adversarial term alone does not, in as many steps."""
    images, held_out = smooth_images(32), smooth_images(8, seed=1)
    scores = {}
    for weight in (0.0, 10.0):
        torch.manual_seed(0)
        cfg = Pix2PixConfig(**TINY, lr_g=2e-3, l1_weight=0, ssim_weight=weight)
        gan = Pix2Pix.build(cfg, DataInfo(channels=1, spatial_shape=(16, 16)))
        before = ssim(gan.translate(held_out).numpy(), -held_out.numpy(), data_range=2.0).mean()
        for step in range(40):
            batch = images[(step * 8) % 32 : (step * 8) % 32 + 8]
            losses = gan.train_step({"source": batch, "target": -batch})
        after = ssim(gan.translate(held_out).numpy(), -held_out.numpy(), data_range=2.0).mean()
        scores[weight] = after - before
    assert set(losses) == {"d_loss", "g_adv", "l1", "ssim"}
    assert scores[10.0] > 0.15 and scores[0.0] < 0.05, scores
    with pytest.raises(ConfigError, match="ssim_weight needs image sides of at least 7"):
        Pix2Pix.build(Pix2PixConfig(**TINY, ssim_weight=1), DataInfo(1, (4, 4)))


def test_state_dict_round_trip_gives_the_same_translation() -> None:
    torch.manual_seed(0)
    data = DataInfo(channels=1, spatial_shape=(16, 16))
    gan = Pix2Pix.build(Pix2PixConfig(**TINY), data)
    batch = smooth_images(4)
    gan.train_step({"source": batch, "target": -batch})
    other = Pix2Pix.build(Pix2PixConfig(**TINY), data)
    assert not torch.equal(other.translate(batch), gan.translate(batch))
    other.load_state_dict(gan.state_dict())
    assert torch.equal(other.translate(batch), gan.translate(batch))
    assert torch.equal(other.sample(2), gan.sample(2))  # the monitoring pairs came along
    assert set(gan.inference_nets()) == {"generator"}


def test_strict_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key 'model.latent_dim'"):
        RunConfig.from_dict({"model": {"family": "pix2pix", "latent_dim": 8}})
    with pytest.raises(ConfigError, match="model.loss"):
        RunConfig.from_dict({"model": {"family": "pix2pix", "loss": "hinge"}})
    with pytest.raises(ConfigError, match="divisible by 32"):
        Pix2Pix.build(Pix2PixConfig(), DataInfo(channels=1, spatial_shape=(48, 40)))
    with pytest.raises(ConfigError, match="cannot sample from noise"):
        Pix2Pix.build(Pix2PixConfig(**TINY), DataInfo(1, (16, 16)), training=False).sample(1)
    gan = Pix2Pix.build(Pix2PixConfig(**TINY), DataInfo(1, (16, 16)))
    with pytest.raises(ConfigError, match="'source' and 'target'"):
        gan.train_step({"image": torch.zeros(2, 1, 16, 16)})


def test_engine_trains_on_paired_volumes_and_packages_both_maps(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t1 = (rng.random((1, 16, 16, 6)) * 400 + 100).astype(np.float32)
    write_nifti(tmp_path / "t1.nii.gz", t1)
    write_nifti(tmp_path / "t2.nii.gz", 3000 - 5 * t1)
    cfg = RunConfig.from_dict(
        {
            "data": {
                "format": "paired",
                "path": str(tmp_path / "t1.nii.gz"),
                "target_path": str(tmp_path / "t2.nii.gz"),
                "min_foreground": 0.0,
            },
            "model": {"family": "pix2pix", **TINY},
            "train": {
                "steps": 3,
                "batch_size": 2,
                "progress": False,
                "tensorboard": False,
                "out_dir": str(tmp_path / "run"),
            },
        }
    )
    result = train(cfg)
    assert result.status == "completed" and result.package
    package = load_package(result.package)
    src_map, tgt_map = package.data.source_intensity_map, package.data.intensity_map
    assert src_map is not None and src_map.high <= 500 + 1e-3
    assert tgt_map.low >= 3000 - 5 * 500 - 1e-3 and tgt_map.high <= 3000 - 5 * 100 + 1e-3
    assert package.data.source_channels == 1 and package.data.spatial_shape == (16, 16)
    assert (Path(result.out_dir) / "samples").is_dir()
    paired_without_target = {"format": "paired", "path": "x.nii.gz"}
    with pytest.raises(ConfigError, match="target_path is required"):
        train(RunConfig.from_dict({"data": paired_without_target, "model": cfg.model.model_dump()}))


def test_engine_trains_a_3d_model_on_whole_volumes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):  # two paired volumes per domain, paired by sorted file name
        for side, scale in (("src", 1.0), ("tgt", -2.0)):
            (tmp_path / side).mkdir(exist_ok=True)
            vol = (rng.random((1, 8, 8, 8)) * 50 * scale).astype(np.float32)
            write_nifti(tmp_path / side / f"{name}.nii.gz", vol)
    cfg = RunConfig.from_dict(
        {
            "data": {
                "format": "paired",
                "path": str(tmp_path / "src"),
                "target_path": str(tmp_path / "tgt"),
                "volumes": "whole",
            },
            "model": {
                "family": "pix2pix",
                "g_channels": 4,
                "g_depth": 2,
                "d_channels": 4,
                "d_layers": 1,
            },
            "train": {
                "steps": 2,
                "batch_size": 2,
                "progress": False,
                "tensorboard": False,
                "out_dir": str(tmp_path / "run"),
            },
        }
    )
    folder = Path(train(cfg).package or "")
    package = load_package(folder)
    assert package.data.spatial_shape == (8, 8, 8) and package.data.spatial_dims == 3
    # bf16 + channels_last_3d gave NaN in about half of these runs (torch 2.13 CPU): 3D models
    # train in fp32 on a CPU unless asked
    card = json.loads((folder / "model_card.json").read_text())
    assert card["training"]["channels_last"] is False
    assert card["training"]["precision"] == "fp32"
