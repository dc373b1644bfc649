"""``medisynth generate``: every format, labels in the requested balance, source units."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from medisynth.apply.generate import generate, largest_remainder, parse_class_balance
from medisynth.cli import main
from medisynth.config import RunConfig
from medisynth.data.intensity import IntensityMap
from medisynth.data.io import read_medmnist
from medisynth.errors import ConfigError
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo
from medisynth.package import save_package

CLASSES = ["malignant", "benign"]


def make_package(folder: Path, source_dtype: str = "uint8", classes: list[str] = CLASSES) -> Path:
    high = 255.0 if source_dtype == "uint8" else 65535.0
    data = DataInfo(
        channels=1,
        spatial_shape=(16, 16),
        class_names=classes,
        class_counts=dict.fromkeys(range(len(classes)), 10),
        intensity_map=IntensityMap(0.0, high, clip=False, kind="range"),
        source_dtype=source_dtype,
        spacing=(0.5, 0.5),
    )
    cfg = RunConfig.from_dict({"model": {"g_channels": 4, "latent_dim": 8}})
    torch.manual_seed(0)
    family = get_family("dcgan").build(cfg.model, data, training=False)
    return save_package(folder, family, cfg)


@pytest.fixture
def model_uint8(tmp_path: Path) -> Path:
    return make_package(tmp_path / "model8")


def read_labels(out: Path) -> list[dict[str, str]]:
    with open(out / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_png_with_fractions(tmp_path: Path, model_uint8: Path) -> None:
    out = tmp_path / "png"
    result = generate(model_uint8, 10, out, fmt="png", class_balance="0.3,0.7", seed=1)
    assert result.class_counts == {"malignant": 3, "benign": 7}
    rows = read_labels(out)
    assert Counter(r["class"] for r in rows) == {"malignant": 3, "benign": 7}
    for row in rows:
        path = out / row["file"]
        assert path.parent.name == row["class"]
        assert CLASSES[int(row["label"])] == row["class"]
        pixels = np.asarray(PILImage.open(path))
        assert pixels.dtype == np.uint8 and pixels.shape == (16, 16)
    record = json.loads((out / "generation.json").read_text())
    assert record["synthetic"] is True and record["seed"] == 1 and record["count"] == 10


def test_png_is_16_bit_for_a_16_bit_source(tmp_path: Path) -> None:
    model = make_package(tmp_path / "model16", source_dtype="uint16")
    out = tmp_path / "png16"
    generate(model, 4, out, fmt="png")
    files = sorted(out.glob("*/*.png"))
    assert len(files) == 4
    assert np.asarray(PILImage.open(files[0])).dtype == np.uint16


def test_npz_with_counts_is_medmnist_layout(tmp_path: Path, model_uint8: Path) -> None:
    out = tmp_path / "npz"
    result = generate(model_uint8, None, out, fmt="npz", class_balance="malignant:2,benign:5")
    assert result.count == 7
    data = read_medmnist(out / "synthetic.npz")
    assert data.images["train"].shape == (7, 1, 16, 16) and data.source_dtype == "uint8"
    assert data.class_counts("train") == {0: 2, 1: 5}


def test_nifti_in_source_units_with_spacing(tmp_path: Path, model_uint8: Path) -> None:
    out = tmp_path / "nifti"
    generate(model_uint8, 4, out, fmt="nifti", class_balance="0:1,1:3", seed=2)
    rows = read_labels(out)
    assert Counter(r["label"] for r in rows) == {"0": 1, "1": 3}
    image = nib.load(out / rows[0]["file"])
    assert image.shape == (16, 16) and image.header.get_zooms() == (0.5, 0.5)
    assert image.get_data_dtype() == np.uint8
    # the same seed gives the same images, in source units (0..255, not [-1, 1])
    again = tmp_path / "again"
    generate(model_uint8, 4, again, fmt="nifti", class_balance="0:1,1:3", seed=2)
    first = np.asarray(image.dataobj)
    assert np.array_equal(first, np.asarray(nib.load(again / rows[0]["file"]).dataobj))
    assert first.max() > 1


def test_nifti_header_and_dicom_name_the_model(tmp_path: Path, model_uint8: Path) -> None:
    import pydicom

    card = json.loads((model_uint8 / "model_card.json").read_text())
    generate(model_uint8, 2, tmp_path / "nifti", fmt="nifti", seed=1)
    first = read_labels(tmp_path / "nifti")[0]["file"]
    descrip = nib.load(tmp_path / "nifti" / first).header["descrip"].tobytes().decode()
    assert card["model_id"] in descrip
    result = generate(model_uint8, 4, tmp_path / "dicom", fmt="dicom", class_balance="0:1,1:3")
    datasets = [pydicom.dcmread(tmp_path / "dicom" / f) for f in result.files]
    assert [ds.ImageComments for ds in datasets] == ["class label 0"] + ["class label 1"] * 3
    for ds in datasets:
        assert ds.SyntheticData == "YES" and card["model_id"] in ds.DerivationDescription


def test_class_balance_parsing() -> None:
    assert parse_class_balance("0.5,0.5", CLASSES, 1000) == [500, 500]
    assert parse_class_balance("0:300,1:700", CLASSES, None) == [300, 700]
    assert parse_class_balance("0:300,1:700", CLASSES, 100) == [30, 70]
    assert parse_class_balance("benign:1", CLASSES, 5) == [0, 5]
    assert parse_class_balance(None, CLASSES, 5) == [3, 2]
    assert sum(largest_remainder([1 / 3] * 3, 100)) == 100
    for bad, message in [
        ("0.5,0.3,0.2", "3 values but the model has 2 classes"),
        ("0:1,0.5", "either"),
        ("cancer:1", "unknown class 'cancer'"),
        ("0:-1,1:2", ">= 0"),
        ("a,b", "numbers"),
        ("0:3,0:5", "gives class 'malignant' twice"),
        ("benign:1,benign:2", "gives class 'benign' twice"),
        ("1:1,0:1,benign:2", "gives class 'benign' twice"),  # by number and by name
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_class_balance(bad, CLASSES, 10)
    with pytest.raises(ConfigError, match="'malignant' twice"):
        parse_class_balance("0:3,0:5", CLASSES, None)
    with pytest.raises(ConfigError, match="whole counts"):
        parse_class_balance("0.5,0.5", CLASSES, None)


def test_output_folder_rules(tmp_path: Path, model_uint8: Path) -> None:
    out = tmp_path / "out"
    generate(model_uint8, 4, out)
    with pytest.raises(ConfigError, match="--overwrite"):
        generate(model_uint8, 2, out)
    generate(model_uint8, 2, out, overwrite=True)
    assert len(list(out.glob("*/*.png"))) == 2  # the earlier set was replaced, not mixed in
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate(model_uint8, 2, user, overwrite=True)
    with pytest.raises(ConfigError, match="unknown format"):
        generate(model_uint8, 2, tmp_path / "x", fmt="jpeg")


def test_cli_generate(
    tmp_path: Path, model_uint8: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    code = main(
        [
            "generate",
            str(model_uint8),
            "-n",
            "6",
            "--class-balance",
            "1,2",
            "-o",
            str(out),
            "--format",
            "npz",
        ]
    )
    assert code == 0
    assert read_medmnist(out / "synthetic.npz").class_counts("train") == {0: 2, 1: 4}
    assert (
        main(
            [
                "generate",
                str(model_uint8),
                "-n",
                "6",
                "--class-balance",
                "1,2,3",
                "-o",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "3 values but the model has 2 classes" in capsys.readouterr().err
    balance = ["--class-balance", "benign:3,benign:5", "-o", str(tmp_path / "twice")]
    assert main(["generate", str(model_uint8), *balance]) == 2
    assert "'benign' twice" in capsys.readouterr().err
