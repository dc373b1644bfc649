"""data.format image_mask: images and label maps from folders, one-hot sources, random patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medisynth.data.datasets import ImageMaskPairs
from medisynth.data.formats import load_training_data
from medisynth.errors import ConfigError
from medisynth.settings import DataConfig


def write_pairs(folder: Path, n: int = 3, size: tuple[int, int] = (20, 24)) -> None:
    """RGB images with a bright square, 0/255 binary masks of the square (GIF, as DRIVE)."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        top, left = rng.integers(0, 10, 2)
        mask[top : top + 8, left : left + 8] = 255
        rgb = np.stack([mask // 2 + 40] * 3, -1).astype(np.uint8)
        Image.fromarray(rgb).save(folder / "images" / f"{i:02d}_image.tif")
        Image.fromarray(mask).save(folder / "masks" / f"{i:02d}_mask.gif")


def test_folders_give_one_hot_sources_and_colour_targets(tmp_path: Path) -> None:
    write_pairs(tmp_path)
    cfg = DataConfig(
        format="image_mask", path=str(tmp_path / "images"), mask_path=str(tmp_path / "masks")
    )
    dataset, info = load_training_data(cfg)
    item = dataset[1]
    assert item["source"].shape == (2, 20, 24) and item["target"].shape == (3, 20, 24)
    assert set(item["source"].unique().tolist()) == {-1.0, 1.0}
    assert torch.all(item["source"].sum(0) == 0)  # exactly one label on per pixel
    square = item["source"][1] > 0
    assert item["target"][:, square].mean() > item["target"][:, ~square].mean()  # the object
    assert info.mask_labels == 2 and info.source_channels == 2 and info.channels == 3
    assert info.spatial_shape == (20, 24) and "2 labels" in info.source
    assert info.intensity_map.high == 255.0  # uint8 images keep their range


def test_patches_are_random_crops_of_matching_pairs() -> None:
    labels = torch.arange(16 * 16).reshape(1, 16, 16) % 2
    images = (labels[:, None].float() * 2 - 1).repeat(1, 2, 1, 1)  # image = the label
    dataset = ImageMaskPairs(images, labels, 2, patch_size=8)
    torch.manual_seed(0)
    crops = [dataset[0] for _ in range(6)]
    assert len(dataset) > 1 and all(c["source"].shape == (2, 8, 8) for c in crops)
    for crop in crops:  # the crop of the image is the crop of the mask
        assert torch.equal(crop["source"][1], crop["target"][0])
    assert len({c["target"].sum().item() for c in crops} | {0}) >= 2 or len(crops) == 6
    assert not all(torch.equal(crops[0]["source"], c["source"]) for c in crops[1:])


def test_errors_say_what_is_wrong(tmp_path: Path) -> None:
    write_pairs(tmp_path)
    images, masks = str(tmp_path / "images"), str(tmp_path / "masks")
    with pytest.raises(ConfigError, match="mask_path is required"):
        load_training_data(DataConfig(format="image_mask", path=images))
    (tmp_path / "masks" / "00_mask.gif").unlink()
    with pytest.raises(ConfigError, match="one label map per image: 3 images"):
        load_training_data(DataConfig(format="image_mask", path=images, mask_path=masks))
    np.save(tmp_path / "image.npy", np.zeros((1, 20, 24), np.float32))
    np.save(tmp_path / "soft.npy", np.full((1, 20, 24), 0.5, np.float32))
    soft = DataConfig(
        format="image_mask", path=str(tmp_path / "image.npy"), mask_path=str(tmp_path / "soft.npy")
    )
    with pytest.raises(ConfigError, match="fractional"):  # a probability map, not labels
        load_training_data(soft)
    np.save(tmp_path / "small.npy", np.zeros((1, 10, 24), np.float32))
    with pytest.raises(ConfigError, match="must be on the images' grid"):
        load_training_data(soft.model_copy(update={"mask_path": str(tmp_path / "small.npy")}))
    colour = np.zeros((20, 24, 3), np.uint8)
    colour[..., 0] = 255
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ConfigError, match="3 different channels"):
        load_training_data(soft.model_copy(update={"mask_path": str(tmp_path / "colour.png")}))
    with pytest.raises(ConfigError, match="larger than the images"):
        ImageMaskPairs(torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long), 2, 16)
