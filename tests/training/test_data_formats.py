"""Training data from image folders and from slices of a volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medisynth.config import DataConfig
from medisynth.errors import ConfigError
from medisynth.training.data import load_training_data


def test_folder_with_class_subfolders_keeps_16_bit_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, level in (("normal", 1000), ("pneumonia", 40000)):
        (tmp_path / name).mkdir()
        for i in range(3):
            values = rng.integers(level, level + 500, size=(20, 20), dtype=np.uint16)
            PILImage.fromarray(values).save(tmp_path / name / f"{i}.png")
    dataset, info = load_training_data(
        DataConfig(format="folder", path=str(tmp_path), image_size=16)
    )
    assert info.class_names == ["normal", "pneumonia"] and info.class_counts == {0: 3, 1: 3}
    assert info.source_dtype == "uint16" and info.intensity_map.high == 65535.0
    assert str(tmp_path) not in info.source  # paths can name patients: not in the card
    assert dataset[0]["image"].shape == (1, 16, 16)
    means = [float(dataset[i]["image"].mean()) for i in range(len(dataset))]
    labels = [int(dataset[i]["label"]) for i in range(len(dataset))]
    assert max(m for m, y in zip(means, labels, strict=True) if y == 0) < min(
        m for m, y in zip(means, labels, strict=True) if y == 1
    )


def test_slices_skip_empty_ones(shared_data: Path) -> None:
    path = shared_data / "nilearn_mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    every, _ = load_training_data(
        DataConfig(format="slices", path=str(path), axis=2, min_foreground=0.0)
    )
    some, info = load_training_data(
        DataConfig(format="slices", path=str(path), axis=2, min_foreground=0.3)
    )
    assert len(every) == 189 and 0 < len(some) < 189
    assert info.spatial_shape == (197, 233) and info.spacing == (1.0, 1.0)
    with pytest.raises(ConfigError, match="min_foreground"):
        load_training_data(DataConfig(format="slices", path=str(path), min_foreground=1.0))


def test_the_configured_modality_is_recorded(tmp_path: Path, tiny_npz: Path) -> None:
    """data.modality reaches the model (DataInfo and intensity maps) for MedMNIST files and for
    both sides of pairs, so translate/enhance can check their inputs against it."""
    from medisynth.export.nifti import write_nifti

    _, info = load_training_data(DataConfig(path=str(tiny_npz), modality="us"))
    assert (info.modality, info.intensity_map.modality) == ("US", "US")
    rng = np.random.default_rng(0)
    mr = (rng.random((1, 16, 16, 4)) * 500 + 100).astype(np.float32)
    write_nifti(tmp_path / "t1.nii.gz", mr)
    write_nifti(tmp_path / "t2.nii.gz", 2000 - mr)
    write_nifti(tmp_path / "ct.nii.gz", mr * 4 - 1000)  # Hounsfield units
    pairs = {"format": "paired", "min_foreground": 0.0}
    _, same = load_training_data(
        DataConfig(
            path=str(tmp_path / "t1.nii.gz"),
            target_path=str(tmp_path / "t2.nii.gz"),
            modality="MR",
            **pairs,
        )
    )
    assert same.source_intensity_map is not None
    assert (same.source_intensity_map.modality, same.modality) == ("MR", "MR")
    assert same.intensity_map.modality == "MR"
    _, cross = load_training_data(
        DataConfig(
            path=str(tmp_path / "ct.nii.gz"),
            target_path=str(tmp_path / "t2.nii.gz"),
            modality="CT",
            target_modality="MR",
            **pairs,
        )
    )
    assert cross.source_intensity_map is not None
    assert (cross.source_intensity_map.modality, cross.modality) == ("CT", "MR")
