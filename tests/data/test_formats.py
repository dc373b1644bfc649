"""The registry of data formats, and training data from image folders and slices of a volume."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from pydantic import ValidationError

from medisynth.data.formats import DATA_FORMATS, data_format_names, load_training_data
from medisynth.data.info import DataInfo
from medisynth.errors import ConfigError
from medisynth.settings import IMAGE_FORMATS, MASK_FORMATS, PAIR_FORMATS, DataConfig


def test_every_format_the_config_accepts_has_a_loader_and_no_other() -> None:
    """The registry and ``DataConfig.format`` name the same formats: a new format needs both."""
    accepted = set(get_args(DataConfig.model_fields["format"].annotation))
    assert accepted == set(DATA_FORMATS) == set(data_format_names())
    assert accepted == IMAGE_FORMATS | PAIR_FORMATS | MASK_FORMATS  # every format has a kind
    assert not (
        IMAGE_FORMATS & PAIR_FORMATS or IMAGE_FORMATS & MASK_FORMATS or PAIR_FORMATS & MASK_FORMATS
    )
    for name in data_format_names():
        assert DataConfig(format=name).format == name
        assert callable(DATA_FORMATS[name])
    with pytest.raises(ValidationError, match="format"):
        DataConfig(format="volumes")


def test_load_training_data_dispatches_through_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    def fake(config: DataConfig) -> tuple[list[dict[str, torch.Tensor]], DataInfo]:
        seen.append(config.format)
        return [], DataInfo(channels=1, spatial_shape=(4, 4))

    monkeypatch.setitem(DATA_FORMATS, "slices", fake)
    _, info = load_training_data(DataConfig(format="slices", path="never-read.nii.gz"))
    assert seen == ["slices"] and info.spatial_shape == (4, 4)
    monkeypatch.delitem(DATA_FORMATS, "slices")
    with pytest.raises(ConfigError, match="unknown data.format 'slices'; known formats: folder"):
        load_training_data(DataConfig(format="slices", path="never-read.nii.gz"))


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


def _class_folders(root: Path, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(2):
            values = rng.integers(0, 255, size=(8, 8), dtype=np.uint8)
            PILImage.fromarray(values).save(root / name / f"{i}.png")


def test_identifying_class_folder_names_are_refused(tmp_path: Path) -> None:
    _class_folders(tmp_path, ["DOE_JOHN_19600101", "normal"])
    with pytest.raises(ConfigError, match=r"data\.class_names") as caught:
        load_training_data(DataConfig(format="folder", path=str(tmp_path)))
    assert "DOE_JOHN_19600101" in str(caught.value)  # the user is shown which one, and why
    _, info = load_training_data(
        DataConfig(format="folder", path=str(tmp_path), class_names=["lesion", "normal"])
    )
    assert info.class_names == ["lesion", "normal"]
    assert "DOE" not in info.source and "JOHN" not in info.source and "4 files" in info.source
    with pytest.raises(ConfigError, match="3 class names.*2 classes"):
        load_training_data(
            DataConfig(format="folder", path=str(tmp_path), class_names=["a", "b", "c"])
        )


@pytest.mark.parametrize(
    "name",
    [
        "DOE_JOHN",
        "Doe^John",
        "doe^john",
        "Doe, John",
        "DOE JOHN",
        "19600101",
        "1960-01-01",
        "01.02.60",
        "MRN12345",
        "patient_0042",
    ],
)
def test_names_that_look_identifying(name: str) -> None:
    from medisynth.data.privacy import identifying_reason

    assert identifying_reason(name) is not None


@pytest.mark.parametrize(
    "name", ["normal", "pneumonia", "benign", "malignant", "0", "1", "12", "class_2", "T1", "all"]
)
def test_ordinary_class_names_pass(name: str) -> None:
    from medisynth.data.privacy import identifying_reason

    assert identifying_reason(name) is None


def test_the_mixed_shape_error_names_an_action_the_command_line_offers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medisynth.cli import main

    images = tmp_path / "images"
    images.mkdir()
    for i, size in enumerate((16, 16, 16, 12)):
        PILImage.fromarray(np.full((size, size), 10 * i, np.uint8)).save(images / f"{i}.png")
    (tmp_path / "run.yaml").write_text(
        f"data:\n  format: folder\n  path: {images}\ntrain:\n  out_dir: {tmp_path / 'run'}\n"
    )
    assert main(["train", str(tmp_path / "run.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mixed shapes" in err and "3.png" in err
    assert "skip_bad" not in err  # a Python argument the command line does not have
    assert f"medisynth info {images}" in err and "move the 1 differing" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_unpaired_in_brain_data_take_their_own_masks_one_per_scan(tmp_path: Path) -> None:
    """Unpaired targets use data.target_brain_mask_path; a background that is not 0 is only
    left out with the mask; a missing mask is a clear error."""
    from medisynth.export.nifti import write_nifti

    rng = np.random.default_rng(0)
    brain = np.zeros((12, 12, 4), bool)
    brain[2:10, 3:9] = True
    for side, background in (("source", 0.0), ("target", -3.0)):
        (tmp_path / side).mkdir()
        (tmp_path / f"{side}_mask").mkdir()
        for name in ("a", "b"):
            scan = np.where(brain, rng.gamma(3.0, 100.0, brain.shape), background)
            write_nifti(tmp_path / side / f"{name}.nii.gz", scan[None].astype(np.float32))
            write_nifti(
                tmp_path / f"{side}_mask" / f"{name}.nii.gz", brain[None].astype(np.float32)
            )
    config = DataConfig(
        format="unpaired",
        path=str(tmp_path / "source"),
        target_path=str(tmp_path / "target"),
        axis=2,
        normalisation="brain",
        target_brain_mask_path=str(tmp_path / "target_mask"),
    )
    dataset, info = load_training_data(config)
    assert info.intensity_map.kind == info.source_intensity_map.kind == "brain"
    targets = dataset.targets  # in [-1, 1]: the background is 0 -> -1, the brain spans it
    assert float(targets.min()) == -1.0 and float(targets.max()) == 1.0
    assert float((targets > -1).float().mean()) == pytest.approx(brain.mean(), abs=0.02)
    (tmp_path / "target_mask" / "b.nii.gz").unlink()
    with pytest.raises(ConfigError, match="needs one brain mask per scan: 1 masks for 2 scans"):
        load_training_data(config)
    with pytest.raises(ConfigError, match="paired targets share data.brain_mask_path"):
        load_training_data(config.model_copy(update={"format": "paired"}))
