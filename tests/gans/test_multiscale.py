"""The multiscale family: training steps in 2D and 3D, conditional use, strict config, engine,
model package round trip and tiled generation from a package."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from medisynth.apply.volumes import generate_volume
from medisynth.config import RunConfig
from medisynth.errors import ConfigError
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo
from medisynth.gans.multiscale import (
    MultiScaleConfig,
    MultiScaleGAN,
    _crop,
    _upsampled_crop,
    orthogonal_slices,
)
from medisynth.nets.multiscale import downsample, noise_map, upsample2

TINY = {
    "levels": 2,
    "latent_dim": 3,
    "g0_channels": 4,
    "g_channels": 4,
    "d_channels": 4,
    "res_blocks": 1,
    "patch_size": 16,
    "tile": 16,
    "overlap": 4,
}


def blobs(n: int, side: int, dims: int = 3, seed: int = 0) -> torch.Tensor:
    """Smooth random blobs in [-1, 1], ``(n, 1, side, ...)``."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, side)] * dims, indexing="ij"))
    centres = torch.rand(n, dims, generator=g) - 0.5
    shape = (n, dims) + (1,) * dims
    dist = ((grid[None] - centres.view(shape)) ** 2).sum(1, keepdim=True)
    return torch.exp(-dist / 0.1) * 2 - 1


def sparse_discs(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """Binary discs covering ~5% of a 2D image, in {-1, 1}: sparse shapes on an empty background,
    like the AdrenalMNIST3D glands (1.4% foreground at level 0)."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, side)] * 2, indexing="ij"))
    centres = (torch.rand(n, 2, 1, 1, generator=g) - 0.5) * 1.2
    radius = 0.3 * (0.7 + 0.6 * torch.rand(n, 1, 1, generator=g))
    inside = ((grid[None] - centres) ** 2).sum(1).sqrt() < radius
    return torch.where(inside, 1.0, -1.0)[:, None]


def level0_after_training(steps: int, **settings: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Level-0 samples of a tiny 2D model trained on sparse discs, and the real level-0 images."""
    torch.manual_seed(0)
    data = sparse_discs(64, 16)
    cfg = MultiScaleConfig(
        **{**TINY, "levels": 1, "latent_dim": 4, "g0_channels": 8, "d_channels": 8}, **settings
    )
    gan = MultiScaleGAN.build(cfg, DataInfo(channels=1, spatial_shape=(16, 16)))
    picks = torch.Generator().manual_seed(0)
    for _ in range(steps):
        gan.train_step({"image": data[torch.randint(0, len(data), (8,), generator=picks)]})
    z = noise_map(cfg.latent_dim, (2, 2), 32, torch.Generator().manual_seed(1))
    with torch.no_grad():
        return gan.nets["generator"].base(z), downsample(data, 2)


@pytest.mark.slow
def test_level0_learns_sparse_shapes_rather_than_empty_images() -> None:
    """The first AdrenalMNIST3D run's level 0 collapsed to empty volumes (LSGAN, Adam betas
    (0.5, 0.999), no minibatch spread, no augmentation, local noise only); with the defaults a
    few hundred steps on sparse discs give varied images with foreground."""
    fake, real = level0_after_training(250)
    has_foreground = (fake > 0).flatten(1).any(1).float().mean()
    assert has_foreground >= 0.5, f"only {has_foreground:.0%} of level-0 samples are not empty"
    spread, real_spread = fake.std(0).mean(), real.std(0).mean()
    assert spread > 0.25 * real_spread, f"level 0 makes one image: spread {spread:.3f}"


def test_registered_and_strict_config() -> None:
    assert get_family("multiscale") is MultiScaleGAN
    cfg = RunConfig.from_dict({"model": {"family": "multiscale", "levels": 3}})
    assert isinstance(cfg.model, MultiScaleConfig) and cfg.model.levels == 3
    with pytest.raises(
        ConfigError, match=r"unknown key 'model.patchsize'; did you mean 'patch_size'"
    ):
        RunConfig.from_dict({"model": {"family": "multiscale", "patchsize": 16}})
    with pytest.raises(ConfigError, match="condition_key and model.condition_channels together"):
        RunConfig.from_dict({"model": {"family": "multiscale", "condition_key": "mask"}})
    with pytest.raises(ConfigError, match="at most half the tile"):
        RunConfig.from_dict({"model": {"family": "multiscale", "tile": 16, "overlap": 12}})
    with pytest.raises(ConfigError, match="levels"):
        RunConfig.from_dict({"model": {"family": "multiscale", "levels": 0}})


def test_image_sides_must_fit_the_levels() -> None:
    with pytest.raises(ConfigError, match=r"multiples of 16 .*data.image_size"):
        MultiScaleGAN.build(MultiScaleConfig(**TINY), DataInfo(channels=1, spatial_shape=(28, 28)))


@pytest.mark.parametrize("shape", [(10, 12, 10), (8, 6)])
def test_training_patches_upsample_only_their_window_and_equal_the_whole_upsampling(
    shape: tuple[int, ...],
) -> None:
    torch.manual_seed(0)
    low = torch.rand(2, *shape)
    whole = upsample2(low[None])[0]
    size = (8,) * len(shape)
    starts = [tuple(0 for _ in shape), tuple(2 * s - 8 for s in shape)]
    starts += [tuple(2 * int(torch.randint(0, s - 3, ())) for s in shape) for _ in range(20)]
    for start in starts:
        torch.testing.assert_close(
            _upsampled_crop(low, start, size), _crop(whole, start, size), rtol=0, atol=0
        )


def test_mode_seeking_term_rewards_level0_for_distinct_images() -> None:
    """``diversity_weight`` w adds w / (|G(z1) - G(z2)| / |z1 - z2|) to the generator loss:
    with the same seed, weights 1 and 2 see the same images and differ by exactly that term."""
    batch = {"image": blobs(2, 32, dims=2), "label": torch.zeros(2, dtype=torch.long)}
    data = DataInfo(channels=1, spatial_shape=(32, 32))
    runs = []
    for weight in (0.0, 1.0, 2.0):
        torch.manual_seed(0)
        gan = MultiScaleGAN.build(MultiScaleConfig(**{**TINY, "diversity_weight": weight}), data)
        runs.append(gan.train_step(batch))
    assert "diversity0" not in runs[0]
    once, twice = runs[1], runs[2]
    assert once["diversity0"] == twice["diversity0"] > 0 and once["d_loss"] == twice["d_loss"]
    term = 1 / (once["diversity0"] + 1e-5)
    assert twice["g_loss"] - once["g_loss"] == pytest.approx(term, rel=1e-4)


@pytest.mark.parametrize("dims", [2, 3])
def test_train_step_trains_every_level_on_patches(dims: int) -> None:
    torch.manual_seed(0)
    side = 64 if dims == 2 else 32
    gan = MultiScaleGAN.build(
        MultiScaleConfig(**{**TINY, "patches_per_volume": 2}),
        DataInfo(channels=1, spatial_shape=(side,) * dims),
    )
    assert gan.patch_shapes == [(side // 4,) * dims, (16,) * dims, (16,) * dims]
    before = {k: v.clone() for k, v in gan.nets["generator"].state_dict().items()}
    seen: list[tuple[int, ...]] = []
    for refiner in gan.nets["generator"].refiners:  # the refiners only ever see patches
        refiner.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    batch = {"image": blobs(3, side, dims), "label": torch.zeros(3, dtype=torch.long)}
    for _ in range(2):
        losses = gan.train_step(batch)
    assert set(losses) == {"d_loss", "d0_loss", "g_loss", "l1", "spread0"}
    assert all(np.isfinite(v) for v in losses.values())
    assert set(seen) == {(6, 1) + (16,) * dims}
    after = gan.nets["generator"].state_dict()
    changed = {
        k.split(".")[0] + "." + k.split(".")[1]
        for k in before
        if not torch.equal(before[k], after[k])
    }
    assert {"base.stem", "refiners.0", "refiners.1"} <= changed
    assert gan.sample(2, torch.tensor([0, 1])).shape == (2, 1) + (side,) * dims
    grid, per_row = gan.sample_grid()
    assert grid.ndim == 4
    assert (per_row, len(grid)) == ((3, 12) if dims == 3 else (4, 4))


def test_conditional_family_translates_whole_volumes() -> None:
    torch.manual_seed(0)
    cfg = MultiScaleConfig(
        **{**TINY, "condition_key": "mask", "condition_channels": 1, "image_key": "image"}
    )
    gan = MultiScaleGAN.build(cfg, DataInfo(channels=1, spatial_shape=(32, 32, 32)))
    images = blobs(2, 32)
    masks = (images[:, 0] > 0).long()  # a label map without channel axis, as ImageMaskDataset gives
    losses = gan.train_step({"image": images, "mask": masks})
    assert np.isfinite(losses["l1"])
    with pytest.raises(ConfigError, match="conditional"):
        gan.sample(1)
    out = gan.apply(masks[:, None].float(), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 32, 32, 32)
    grid, per_row = gan.sample_grid()  # from the conditions of the first training batch
    assert grid.shape == (6, 1, 32, 32) and per_row == 3
    with pytest.raises(ConfigError, match="condition_key='mask' but the batch has only image"):
        gan.train_step({"image": images})


def test_short_training_brings_the_super_resolution_closer_to_the_truth() -> None:
    """L1 (lambda=10) dominates the refiners' loss: a few dozen steps beat plain interpolation."""
    from medisynth.nets.multiscale import downsample, upsample2

    torch.manual_seed(0)
    cfg = MultiScaleConfig(**{**TINY, "levels": 1, "g_channels": 8, "lr_g": 3e-3, "patch_size": 32})
    gan = MultiScaleGAN.build(cfg, DataInfo(channels=1, spatial_shape=(32, 32)))
    cells = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5
    images = cells.float().repeat_interleave(4, 2).repeat_interleave(4, 3) * 2 - 1  # sharp edges
    low = downsample(images, 2)
    refiner = gan.nets["generator"].refiners[0]
    with torch.no_grad():
        start = (upsample2(low) - images).abs().mean()  # what interpolation gets wrong
    for _ in range(80):
        gan.train_step({"image": images})
    with torch.no_grad():
        after = (refiner(upsample2(low)) - images).abs().mean()
    assert after < 0.85 * start


class _Volumes(Dataset[dict[str, torch.Tensor]]):
    def __init__(self) -> None:
        self.images = blobs(8, 32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": torch.tensor(0)}


def test_engine_trains_it_and_its_package_generates_large_volumes(tmp_path: Path) -> None:
    from medisynth.package import load_package
    from medisynth.training.engine import Trainer

    config = RunConfig.from_dict(
        {
            "seed": 1,
            "model": {"family": "multiscale", **TINY},
            "train": {
                "steps": 3,
                "batch_size": 2,
                "precision": "fp32",
                "progress": False,
                "tensorboard": False,
                "sample_every": 0,
                "checkpoint_every": 0,
                "out_dir": str(tmp_path / "run"),
            },
        }
    )
    data = DataInfo(channels=1, spatial_shape=(32, 32, 32), class_counts={0: 8}, spacing=(2, 2, 2))
    result = Trainer(config, dataset=_Volumes(), data_info=data).fit()
    assert result.status == "completed" and result.package
    assert (tmp_path / "run" / "samples" / "step_0000003.png").is_file()
    package = load_package(result.package)
    assert isinstance(package.family, MultiScaleGAN) and not package.conditional
    # the package holds the EMA generator: same weights as the trainer's averaged copy
    a = package.sample(1, seed=4)
    b = package.sample(1, seed=4)
    assert torch.equal(a, b) and a.shape == (1, 1, 32, 32, 32)
    out = generate_volume(result.package, (96, 64, 48), tmp_path / "big.nii.gz", seed=4)
    image = nib.load(tmp_path / "big.nii.gz")
    assert out.shape == image.shape == (96, 64, 48)
    assert np.allclose(image.header.get_zooms(), 2.0)
    # a volume of the training size from the same seed is the package's own sample
    generate_volume(package, 32, tmp_path / "same.nii", seed=4, dtype="float32")
    same = np.asarray(nib.load(tmp_path / "same.nii").dataobj)
    expected = package.to_source_units(a)[0, 0]
    np.testing.assert_allclose(same, expected, atol=1e-4)


def test_state_dict_round_trip_and_generate_refuses_other_families(tmp_path: Path) -> None:
    cfg = MultiScaleConfig(**TINY)
    data = DataInfo(channels=1, spatial_shape=(32, 32))
    torch.manual_seed(0)
    a = MultiScaleGAN.build(cfg, data)
    a.train_step({"image": blobs(2, 32, dims=2)})
    torch.manual_seed(1)
    b = MultiScaleGAN.build(cfg, data)
    b.load_state_dict(a.state_dict())
    noise = [torch.Generator().manual_seed(0) for _ in range(2)]
    assert torch.equal(a.sample(1, generator=noise[0]), b.sample(1, generator=noise[1]))
    dcgan = get_family("dcgan").build(
        get_family("dcgan").config_class(g_channels=4, d_channels=4, latent_dim=4), data
    )
    with pytest.raises(ConfigError, match="multiscale model"):
        generate_volume(dcgan, 32, tmp_path / "x.nii")


def test_orthogonal_slices_order() -> None:
    vol = torch.arange(27.0).view(1, 1, 3, 3, 3)
    views = orthogonal_slices(vol)
    assert torch.equal(views[0, 0], vol[0, 0, 1]) and torch.equal(views[2, 0], vol[0, 0, :, :, 1])


def test_orthogonal_slices_of_a_box_are_centred_on_the_background() -> None:
    vol = torch.rand(1, 1, 2, 4, 6)
    views = orthogonal_slices(vol)
    assert views.shape == (3, 1, 6, 6)
    torch.testing.assert_close(views[0, 0, 1:5], vol[0, 0, 1])  # (4, 6): rows 1..4
    torch.testing.assert_close(views[1, 0, 2:4], vol[0, 0, :, 2])  # (2, 6): rows 2, 3
    torch.testing.assert_close(views[2, 0, 2:4, 1:5], vol[0, 0, :, :, 3])  # (2, 4)
    assert float(views[1, 0, :2].max()) == -1.0 and float(views[2, 0, :, :1].max()) == -1.0
