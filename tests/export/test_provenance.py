"""``medisynth export`` writes DICOM flagged synthetic only for images that medisynth generated:
real images (any format, any options) and changed or unlisted files are refused, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image as PILImage

from medisynth.apply.generate import generate
from medisynth.cli import main
from medisynth.config import RunConfig
from medisynth.data.intensity import IntensityMap
from medisynth.export.pacs import PushError, push
from medisynth.export.provenance import ProvenanceError, export_generated, file_sha256
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo
from medisynth.package import save_package

CLASSES = ["normal", "lesion"]


def _package(folder: Path, data: DataInfo) -> tuple[Path, str]:
    torch.manual_seed(0)
    cfg = RunConfig.from_dict({"model": {"g_channels": 4, "latent_dim": 8}})
    path = save_package(folder, get_family("dcgan").build(cfg.model, data, training=False), cfg)
    return path, json.loads((path / "model_card.json").read_text())["model_id"]


@pytest.fixture(scope="module")
def model_2d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 2D ultrasound model with 16-bit output (its PNGs hold a scaled window)."""
    data = DataInfo(
        channels=1,
        spatial_shape=(16, 16),
        class_names=CLASSES,
        intensity_map=IntensityMap(-50.0, 400.0, kind="percentile", modality="US"),
        source_dtype="float32",
        modality="US",
    )
    return _package(tmp_path_factory.mktemp("m2d") / "model", data)


def _export(*args: str | Path) -> int:
    return main(["export", *(str(a) for a in args)])


def test_a_generated_set_is_exported_with_its_model_labels_and_values(
    model_2d: tuple[Path, str], tmp_path: Path
) -> None:
    model, model_id = model_2d
    result = generate(model, 4, tmp_path / "set", fmt="png", class_balance="1,3", seed=1)
    record = json.loads((tmp_path / "set" / "generation.json").read_text())
    assert record["model_id"] == model_id
    assert record["sha256"] == {
        name: file_sha256(tmp_path / "set" / name) for name in [*result.files, "labels.csv"]
    }
    assert _export(tmp_path / "set", "-o", tmp_path / "dicom") == 0
    datasets = [pydicom.dcmread(p) for p in sorted((tmp_path / "dicom").glob("*.dcm"))]
    assert len(datasets) == 4 and len({ds.SeriesInstanceUID for ds in datasets}) == 1
    storage = record["storage"]
    for ds, name in zip(datasets, result.files, strict=True):
        assert ds.SyntheticData == "YES" and model_id in ds.DerivationDescription
        assert ds.Modality == "US" and str(ds.PatientName).startswith("SYNTHETIC^")
        # the source units, recovered from the 16-bit PNG's window (within its step)
        png = np.asarray(PILImage.open(tmp_path / "set" / name), np.float64)
        source = png / storage["scale"] + storage["offset"]
        assert np.abs(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                      - source).max() < 0.2  # fmt: skip
    assert [ds.ImageComments for ds in datasets] == ["class label 0"] + ["class label 1"] * 3
    # a subfolder or one file of the set, and --model-id as a check
    assert _export(tmp_path / "set" / "lesion", "-o", tmp_path / "lesion") == 0
    assert len(list((tmp_path / "lesion").glob("*.dcm"))) == 3
    one = tmp_path / "set" / result.files[0]
    assert _export(one, "-o", tmp_path / "one", "--model-id", model_id) == 0
    assert len(list((tmp_path / "one").glob("*.dcm"))) == 1


def test_real_images_are_refused_whatever_the_options(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = [
        (shared_data / "pydicom_samples" / "MR_small.dcm", ["--model-id", "x"]),
        (shared_data / "niivue_volumes" / "dicom_series", ["--modality", "MR", "--model-id", "x"]),
        (shared_data / "nibabel_samples" / "anatomical.nii", ["--modality", "MR"]),
        (shared_data / "skimage_medical" / "microaneurysms.png", []),
    ]
    for index, (path, options) in enumerate(real):
        out = tmp_path / f"out{index}"
        assert _export(path, "-o", out, *options) == 2, path
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: not part of a set that medisynth generated")
        assert "real images are never relabelled as synthetic" in err and err.count("\n") == 1
        assert not out.exists()


def test_changed_unlisted_and_unverifiable_files_are_refused(
    model_2d: tuple[Path, str],
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, model_id = model_2d
    result = generate(model, 4, tmp_path / "set", fmt="png", seed=2)
    real = shared_data / "pydicom_samples" / "MR_small.dcm"
    # a real scan copied into the set folder
    shutil.copy(real, tmp_path / "set" / "normal" / "scan.dcm")
    assert _export(tmp_path / "set" / "normal" / "scan.dcm", "-o", tmp_path / "a") == 2
    assert "does not list it" in capsys.readouterr().err
    assert _export(tmp_path / "set", "-o", tmp_path / "b") == 0  # listed files only
    assert len(list((tmp_path / "b").glob("*.dcm"))) == 4
    # a generated file replaced by a real image, or edited
    victim = tmp_path / "set" / result.files[1]
    shutil.copy(real, victim)
    assert _export(tmp_path / "set", "-o", tmp_path / "c") == 2
    assert "bytes differ from what medisynth generated" in capsys.readouterr().err
    assert _export(victim, "-o", tmp_path / "c") == 2
    # options that contradict the record
    good = tmp_path / "set" / result.files[0]
    assert _export(good, "-o", tmp_path / "d", "--model-id", "dcgan-000000000000") == 2
    assert f"generated by model {model_id}" in capsys.readouterr().err
    assert _export(good, "-o", tmp_path / "d", "--modality", "MR") == 2
    assert "records modality US; --modality MR would mislabel them" in capsys.readouterr().err
    # a record without checksums (an older medisynth), or a hand-made folder without one
    record = json.loads((tmp_path / "set" / "generation.json").read_text())
    del record["sha256"]
    (tmp_path / "set" / "generation.json").write_text(json.dumps(record))
    assert _export(good, "-o", tmp_path / "e") == 2
    assert "no file checksums" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "acde")
    with pytest.raises(ProvenanceError, match="no such file"):
        export_generated(tmp_path / "nothing", tmp_path / "f")


def test_volumes_become_series_and_npz_sets_one_labelled_series(
    model_2d: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medisynth.data.io import read_image

    data = DataInfo(
        channels=1,
        spatial_shape=(16, 16, 16),
        class_names=["brain"],
        intensity_map=IntensityMap(0.0, 900.0, kind="percentile"),  # no modality recorded
        spacing=(1.0, 1.0, 1.5),
    )
    model, model_id = _package(tmp_path / "m3d", data)
    result = generate(model, 2, tmp_path / "vols", fmt="nifti")
    assert _export(tmp_path / "vols", "-o", tmp_path / "x") == 2
    assert "records no modality: give --modality CT or MR" in capsys.readouterr().err
    assert _export(tmp_path / "vols", "-o", tmp_path / "mr", "--modality", "MR") == 0
    for name in result.files:
        series = tmp_path / "mr" / Path(name).name.split(".")[0]
        ds = pydicom.dcmread(sorted(series.glob("*.dcm"))[0])
        assert ds.Modality == "MR" and ds.SyntheticData == "YES"
        assert model_id in ds.DerivationDescription
        voxels = np.asarray(nib.load(tmp_path / "vols" / name).dataobj, np.float64)
        exported = read_image(series).array
        assert exported.size == voxels.size  # the same voxels, rounded (MR has no rescale)
        assert np.abs(np.sort(exported.ravel()) - np.sort(voxels.ravel())).max() <= 0.5
    # a MedMNIST-layout set: one series, labels from the file
    model2d, _ = model_2d
    generate(model2d, 3, tmp_path / "npz", fmt="npz", class_balance="2,1")
    exported_files = export_generated(tmp_path / "npz" / "synthetic.npz", tmp_path / "fromnpz")
    comments = [pydicom.dcmread(f).ImageComments for f in exported_files]
    assert comments == ["class label 0"] * 2 + ["class label 1"]
    # a DICOM set is already flagged: sent as it is, not exported again
    generate(model2d, 2, tmp_path / "dcm", fmt="dicom")
    assert _export(tmp_path / "dcm", "-o", tmp_path / "again") == 2
    assert "already DICOM flagged Synthetic Data = YES" in capsys.readouterr().err


def test_push_refusal_never_suggests_relabelling_real_images(shared_data: Path) -> None:
    real = shared_data / "pydicom_samples" / "CT_small.dcm"
    with pytest.raises(PushError, match="not flagged Synthetic Data = YES") as err:
        push([real], "dicom://PACS@127.0.0.1:9")  # refused before any connection
    assert "export" not in str(err.value)
    assert "real images are never relabelled as synthetic" in str(err.value)
