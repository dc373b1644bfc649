"""PNG / NIfTI / npz writers: values, bit depth, geometry and labels survive a round trip."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medisynth.data.io import read_medmnist
from medisynth.errors import ConfigError
from medisynth.export import png_storage, write_medmnist_npz, write_nifti, write_png


def test_png_keeps_8_bit_sources_8_bit(tmp_path: Path) -> None:
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4) * 16
    write_png(tmp_path / "a.png", image, storage=png_storage("uint8", 0, 255))
    stored = np.asarray(PILImage.open(tmp_path / "a.png"))
    assert stored.dtype == np.uint8 and np.array_equal(stored, image[0].astype(np.uint8))


def test_png_is_16_bit_where_the_source_was(tmp_path: Path) -> None:
    image = np.array([[[0.0, 1000.0], [40000.0, 65535.0]]])
    write_png(tmp_path / "a.png", image, storage=png_storage("uint16", 0, 65535))
    stored = np.asarray(PILImage.open(tmp_path / "a.png"))
    assert stored.dtype == np.uint16 and np.array_equal(stored, image[0].astype(np.uint16))


def test_png_maps_signed_or_float_sources_recoverably(tmp_path: Path) -> None:
    storage = png_storage("int16", -1000.0, 1000.0)  # CT-like, negative values
    image = np.array([[[-1000.0, 0.0], [500.0, 1000.0]]])
    write_png(tmp_path / "ct.png", image, storage=storage)
    stored = np.asarray(PILImage.open(tmp_path / "ct.png"))
    assert stored.dtype == np.uint16
    assert np.allclose(storage.decode(stored), image[0], atol=2000 / 65535)


def test_png_colour_and_bad_shapes(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).uniform(0, 255, (3, 5, 6))
    write_png(tmp_path / "rgb.png", rgb)
    assert np.asarray(PILImage.open(tmp_path / "rgb.png")).shape == (5, 6, 3)
    with pytest.raises(ConfigError, match="PNG needs"):
        write_png(tmp_path / "bad.png", np.zeros((2, 4, 4)))
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_nifti_round_trip_with_spacing(tmp_path: Path) -> None:
    image = np.random.default_rng(0).uniform(0, 255, (1, 6, 7)).astype(np.float32)
    write_nifti(tmp_path / "a.nii.gz", image, spacing=(0.5, 2.0), dtype="uint8")
    loaded = nib.load(tmp_path / "a.nii.gz")
    assert loaded.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(loaded.dataobj), np.rint(image[0]).astype(np.uint8))
    assert loaded.header.get_zooms()[:2] == (0.5, 2.0)
    volume = np.zeros((1, 4, 5, 6), np.float32)
    write_nifti(tmp_path / "v.nii", volume)
    assert nib.load(tmp_path / "v.nii").shape == (4, 5, 6)


def test_medmnist_npz_reads_back_with_labels(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 8, 8)).astype(np.float32)
    labels = np.array([0, 1, 1, 2, 0])
    write_medmnist_npz(tmp_path / "s.npz", images, labels, dtype="uint8")
    raw = np.load(tmp_path / "s.npz")
    assert raw["train_images"].shape == (5, 8, 8) and raw["train_labels"].shape == (5, 1)
    back = read_medmnist(tmp_path / "s.npz")
    assert np.array_equal(back.images["train"], images)
    assert np.array_equal(back.labels["train"], labels)
    colour = np.zeros((2, 3, 4, 4))
    write_medmnist_npz(tmp_path / "c.npz", colour, np.array([0, 1]))
    assert np.load(tmp_path / "c.npz")["train_images"].shape == (2, 4, 4, 3)
    with pytest.raises(ConfigError, match="labels"):
        write_medmnist_npz(tmp_path / "x.npz", images, labels[:2])
