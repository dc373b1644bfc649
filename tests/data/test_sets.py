"""Reading the sets to compare: npz splits, folders, .npy; intensity windows."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medisynth.data.sets import ImageSet, intensity_window, load_image_set, to_unit
from medisynth.errors import ConfigError, ReadError

RNG = np.random.default_rng(0)


@pytest.fixture()
def medmnist(tmp_path: Path) -> Path:
    path = tmp_path / "data.npz"
    np.savez(
        path,
        train_images=RNG.integers(0, 256, (6, 8, 8), dtype=np.uint8),
        train_labels=np.arange(6)[:, None] % 2,
        test_images=RNG.integers(0, 256, (4, 8, 8), dtype=np.uint8),
        test_labels=np.zeros((4, 1)),
    )
    return path


def test_npz_split_selection(medmnist: Path) -> None:
    test = load_image_set(f"{medmnist}:test")
    assert test.images.shape == (4, 1, 8, 8) and test.split == "test"
    assert test.labels is not None and test.labels.shape == (4,)
    assert load_image_set(str(medmnist), default_split="train").split == "train"
    assert test.fingerprint != load_image_set(f"{medmnist}:train").fingerprint


def test_npz_needs_a_split_when_ambiguous(medmnist: Path) -> None:
    with pytest.raises(ReadError, match="several splits"):
        load_image_set(str(medmnist))
    with pytest.raises(ReadError, match="no split 'val'"):
        load_image_set(f"{medmnist}:val")


def test_missing_and_unsupported_inputs(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="no such"):
        load_image_set(str(tmp_path / "nothing.npz:test"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ReadError, match="not an image set"):
        load_image_set(str(tmp_path / "x.txt"))


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    for label in ("benign", "malignant"):
        (tmp_path / label).mkdir()
        for i in range(3):
            pixels = RNG.integers(0, 256, (10, 12), dtype=np.uint8)
            PILImage.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    data = load_image_set(str(tmp_path))
    assert data.images.shape == (6, 1, 10, 12)
    assert data.labels is not None and sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert intensity_window([data]) == (0.0, 255.0)


def test_nifti_folder_of_volumes(tmp_path: Path) -> None:
    for i in range(3):
        volume = RNG.normal(100, 30, (6, 7, 8)).astype(np.int16)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"v{i}.nii.gz")
    data = load_image_set(str(tmp_path))
    assert data.images.shape == (3, 1, 6, 7, 8) and data.is_3d and data.labels is None
    low, high = intensity_window([data])
    assert (low, high) == (data.images.min(), data.images.max())
    unit = to_unit(data.images, (low, high))
    assert unit.min() == 0.0 and unit.max() == 1.0


def test_npy_sets(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", RNG.random((5, 9, 9)).astype(np.float32))
    data = load_image_set(str(tmp_path / "a.npy"))
    assert data.images.shape == (5, 1, 9, 9)
    assert intensity_window([data]) == (0.0, 1.0)
    np.save(tmp_path / "b.npy", np.zeros(5))
    with pytest.raises(ReadError, match="must be"):
        load_image_set(str(tmp_path / "b.npy"))


def test_intensity_window_options() -> None:
    s = ImageSet("x", np.full((2, 1, 2, 2), 7.0, np.float32), None, "int16", "")
    with pytest.raises(ConfigError, match="constant"):
        intensity_window([s])
    with pytest.raises(ConfigError):
        intensity_window([s], "1,0")
    with pytest.raises(ConfigError):
        intensity_window([s], "low,high")
    assert to_unit(np.array([-5.0, 5.0, 15.0]), (0.0, 10.0)).tolist() == [0.0, 0.5, 1.0]


def test_npz_masks_are_read_and_checked(tmp_path: Path) -> None:
    images = RNG.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    masks = (RNG.random((5, 8, 8)) > 0.5).astype(np.uint8) * 255
    np.savez(tmp_path / "m.npz", test_images=images, test_labels=np.zeros(5), test_masks=masks)
    data = load_image_set(f"{tmp_path}/m.npz:test")
    assert data.masks is not None and data.masks.shape == (5, 1, 8, 8)
    np.testing.assert_array_equal(data.masks[:, 0], masks)
    assert data.describe()["masks"] is True
    for bad, problem in ((masks[:4], "4 masks for 5 images"), (masks[:, :6], "images' size")):
        np.savez(tmp_path / "bad.npz", test_images=images, test_labels=np.zeros(5), test_masks=bad)
        with pytest.raises(ReadError, match=problem):
            load_image_set(f"{tmp_path}/bad.npz")
    np.savez(tmp_path / "plain.npz", test_images=images, test_labels=np.zeros(5))
    assert load_image_set(f"{tmp_path}/plain.npz").masks is None


def test_masks_from_a_separate_folder_spec(tmp_path: Path) -> None:
    for folder in ("images", "masks", "rgb"):
        (tmp_path / folder).mkdir()
    masks = (RNG.random((3, 10, 12)) > 0.5).astype(np.uint8) * 255
    for i in range(3):
        PILImage.fromarray(RNG.integers(0, 256, (10, 12), dtype=np.uint8)).save(
            tmp_path / "images" / f"{i}.png"
        )
        PILImage.fromarray(masks[i]).save(tmp_path / "masks" / f"{i}.png")
        PILImage.fromarray(np.stack([masks[i]] * 3, -1)).save(tmp_path / "rgb" / f"{i}.png")
    data = load_image_set(str(tmp_path / "images"), masks=str(tmp_path / "masks"))
    assert data.masks is not None
    np.testing.assert_array_equal(data.masks[:, 0], masks)
    with pytest.raises(ReadError, match="3 channels"):
        load_image_set(str(tmp_path / "images"), masks=str(tmp_path / "rgb"))
