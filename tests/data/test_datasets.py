"""Datasets: slices, pairs, image+mask and resampled volumes give the right items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medisynth.data.datasets import (
    ImageMaskDataset,
    LabeledImageDataset,
    PairedDataset,
    SliceDataset,
    VolumeDataset,
    slice_indices,
)
from medisynth.data.image import Image
from medisynth.data.intensity import IntensityMap
from medisynth.data.io import read_image, read_image_folder, read_medmnist
from medisynth.errors import ConfigError


def _volume(shape=(6, 8, 10), spacing=(1.0, 1.0, 1.0), seed=0) -> Image:
    rng = np.random.default_rng(seed)
    array = np.zeros((1, *shape), np.float32)
    array[0, 1:4, 2:6, 3:8] = rng.uniform(10, 100, size=(3, 4, 5))
    return Image(array, spacing=spacing, affine=np.diag([*spacing, 1.0]), modality="MR")


def test_slices_along_each_axis_and_empty_ones_skipped() -> None:
    volume = _volume()
    for axis, (count, plane) in enumerate([(6, (8, 10)), (8, (6, 10)), (10, (6, 8))]):
        every = SliceDataset([volume], axis=axis)
        assert len(every) == count and every[0]["image"].shape == (1, *plane)
    nonempty = SliceDataset([volume], axis=0, min_foreground=0.01)
    assert [s for _, s in nonempty.origin] == [1, 2, 3]
    assert slice_indices(volume, 2, min_foreground=0.01) == [3, 4, 5, 6, 7]
    assert nonempty.images.min() >= -1 and nonempty.images.max() <= 1
    with pytest.raises(ConfigError, match="min_foreground"):
        SliceDataset([volume], axis=0, min_foreground=0.99)


def test_a_few_negative_resampling_voxels_do_not_make_the_background_anatomy() -> None:
    volume = _volume(shape=(40, 8, 10))
    volume.array[0, 1, 2, 3] = -70.0  # one interpolation undershoot next to the anatomy
    assert slice_indices(volume, 0, min_foreground=0.01) == [1, 2, 3]


def test_slices_of_different_volumes_need_a_common_size() -> None:
    small, large = _volume((6, 8, 10)), _volume((6, 12, 14), seed=1)
    with pytest.raises(ConfigError, match="size"):
        SliceDataset([small, large], axis=0)
    both = SliceDataset([small, large], axis=0, size=(12, 12))
    assert both[0]["image"].shape == (1, 12, 12)
    assert set(both.labels.tolist()) == {0, 1}


def test_pairs_keep_their_correspondence_and_refuse_other_grids() -> None:
    source = _volume()
    target = Image(source.array * 2 + 5, spacing=source.spacing, affine=source.affine)
    pairs = PairedDataset([source], [target], axis=0, min_foreground=0.01)
    src_map, tgt_map = pairs.source_map, pairs.target_map
    for i in range(len(pairs)):
        item = pairs[i]
        back_src = src_map.inverse(item["source"])
        back_tgt = tgt_map.inverse(item["target"])
        inside = (item["source"].abs() < 0.999) & (item["target"].abs() < 0.999)  # unclipped
        assert inside.sum() > 0
        torch.testing.assert_close(back_tgt[inside], back_src[inside] * 2 + 5, rtol=1e-4, atol=1e-2)
    shifted = Image(target.array, spacing=target.spacing, affine=np.diag([1.0, 1, 1, 1]) + 0.5)
    with pytest.raises(ConfigError, match="affine"):
        PairedDataset([source], [shifted])


def test_image_mask_pairs(shared_data: Path) -> None:
    root = shared_data / "drive" / "training"
    images = [read_image(p) for p in sorted((root / "images").iterdir())[:3]]
    masks = [read_image(p) for p in sorted((root / "1st_manual").iterdir())[:3]]
    dataset = ImageMaskDataset(images, masks)
    item = dataset[0]
    assert item["image"].shape == (3, 584, 565) and item["mask"].shape == (584, 565)
    assert set(torch.unique(item["mask"]).tolist()) == {0, 1}
    assert 0.05 < item["mask"].float().mean() < 0.2  # vessels cover roughly a tenth
    with pytest.raises(ConfigError, match="does not match"):
        ImageMaskDataset(images[:1], [read_image(shared_data / "chasedb1" / "Image_01L_1stHO.png")])


def test_volumes_are_resampled_to_one_grid() -> None:
    """Spacing (1, 1, 2) resampled to 1 mm doubles the last axis; MONAI does the resampling."""
    array = np.zeros((1, 8, 8, 4), np.float32)
    array[0, 2:6, 2:6, 1:3] = 100.0
    volume = Image(array, spacing=(1, 1, 2), affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    m = IntensityMap(0.0, 100.0)
    dataset = VolumeDataset([volume], spacing=(1, 1, 1), shape=(8, 8, 8), intensity_map=m)
    image = dataset[0]["image"]
    assert image.shape == (1, 8, 8, 8)
    np.testing.assert_allclose(np.diag(dataset.affines[0])[:3], [1, 1, 1])
    assert image.max() == pytest.approx(1.0) and image.min() == pytest.approx(-1.0)
    # foreground occupies 4 of 8 voxels along x/y and about half the 8 voxels along z
    profile = (image[0] > 0).float().mean(dim=(0, 1))
    assert 2 <= int((profile > 0).sum()) <= 5


def test_labeled_dataset_from_medmnist_and_folder(shared_data: Path, tmp_path: Path) -> None:
    data = read_medmnist(shared_data / "breastmnist" / "breastmnist.npz")
    dataset = LabeledImageDataset.from_medmnist(data, "val")
    assert len(dataset) == 78 and dataset.num_classes == 2
    assert dataset.class_counts() == data.class_counts("val")
    assert dataset[0]["image"].dtype == torch.float32 and dataset[0]["label"].dtype == torch.int64
    with pytest.raises(ConfigError, match="split 'validation'"):
        LabeledImageDataset.from_medmnist(data, "validation")
    folder = read_image_folder(shared_data / "drive" / "training" / "1st_manual")
    from_folder = LabeledImageDataset.from_folder(folder)
    assert from_folder.images.min() == -1 and from_folder.images.max() == 1
