"""DICOM export: flagged synthetic, no patient data, valid objects, and a faithful round trip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel.orientations as nio
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from medisynth.data.image import Image
from medisynth.data.io import read_image
from medisynth.export.dicom import ExportError, export_dicom, export_dicom_images

MODEL = "breast-cgan-v1"


def _check_flags(files: list[Path], modality: str) -> list[pydicom.Dataset]:
    datasets = [pydicom.dcmread(f) for f in files]
    for ds in datasets:
        assert ds.SyntheticData == "YES"
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.BurnedInAnnotation == "NO"
        assert str(ds.PatientName).startswith("SYNTHETIC^")
        assert ds.PatientID.startswith("SYN-")
        assert ds.Manufacturer == "medisynth" and "medisynth" in ds.SoftwareVersions
        assert MODEL in ds.DerivationDescription
        assert ds.Modality == modality
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    return datasets


def _back_to_original(original: Image, reread: Image) -> np.ndarray:
    """Reorient the re-read (C, S, P, L) DICOM volume to the original array's axes."""
    spatial = np.moveaxis(reread.array, 0, -1)
    transform = nio.ornt_transform(
        nio.io_orientation(reread.affine), nio.io_orientation(original.affine)
    )
    back = nio.apply_orientation(spatial, transform)
    return np.moveaxis(back, -1, 0)


def test_mr_volume_round_trip(shared_data: Path, tmp_path: Path) -> None:
    """Export an MR volume with negative values; re-read: same voxels, same world positions."""
    original = read_image(shared_data / "nibabel_samples" / "anatomical.nii", modality="MR")
    files = export_dicom(original, tmp_path / "mr", model_id=MODEL)
    assert len(files) == original.array.shape[3]  # axial slices along k
    datasets = _check_flags(files, "MR")
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert {ds.PixelRepresentation for ds in datasets} == {1}
    reread = read_image(tmp_path / "mr")
    np.testing.assert_array_equal(_back_to_original(original, reread), original.array)
    assert sorted(reread.spacing) == pytest.approx(sorted(original.spacing))
    rng = np.random.default_rng(0)
    inverse = np.linalg.inv(reread.affine)
    for index in rng.integers(0, original.spatial_shape, size=(20, 3)):
        world = original.world_coordinates(index)
        found = (inverse @ np.append(world, 1.0))[:3]
        np.testing.assert_allclose(found, np.round(found), atol=1e-3)
        i, j, k = np.round(found).astype(int)
        assert reread.array[0, i, j, k] == original.array[(0, *index)]


def test_ct_keeps_hounsfield_units_and_carries_no_source_identity(
    shared_data: Path, tmp_path: Path
) -> None:
    source_path = shared_data / "pydicom_samples" / "eCT_Supplemental.dcm"
    source = pydicom.dcmread(source_path)
    original = read_image(source_path)
    files = export_dicom(original, tmp_path / "ct", model_id=MODEL)
    datasets = _check_flags(files, "CT")
    assert {ds.RescaleType for ds in datasets} == {"HU"}
    reread = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(np.sort(reread.array.ravel()), np.sort(original.array.ravel()))
    identifying = [
        str(source.get(k, ""))
        for k in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                  "SOPInstanceUID", "FrameOfReferenceUID", "InstitutionName")
    ]  # fmt: skip
    for file in files:
        raw = _without_fresh_values(file, identifying)
        for value in identifying:
            if len(value) > 3:
                assert value.encode() not in raw, f"{value!r} leaked into {file.name}"


def _without_fresh_values(file: Path, source_values: list[str]) -> bytes:
    """The file's bytes with the values medisynth makes afresh removed (UIDs, dates, times:
    their random digits can hold a short source value such as PatientID '0010' by chance),
    after checking that none of them is a source value."""
    fresh = {
        str(element.value)
        for element in pydicom.dcmread(file).iterall()
        if element.VR in ("UI", "DA", "TM", "DT") and element.value
    }
    assert not fresh & set(source_values), f"a source value is reused in {file.name}"
    raw = file.read_bytes()
    for value in sorted(fresh, key=len, reverse=True):
        raw = raw.replace(value.encode(), b"")
    return raw


def test_series_from_a_patient_dicom_series_drops_the_patient(
    shared_data: Path, tmp_path: Path
) -> None:
    folder = shared_data / "niivue_volumes" / "dicom_series"
    source = pydicom.dcmread(next(iter(sorted(folder.iterdir()))))
    original = read_image(folder)
    files = export_dicom(original, tmp_path / "out", model_id=MODEL)
    reread = read_image(tmp_path / "out")
    np.testing.assert_array_equal(reread.array, original.array)  # already axial: same layout
    np.testing.assert_allclose(reread.affine, original.affine, atol=1e-4)
    assert reread.spacing == pytest.approx(original.spacing)
    for file in files:
        raw = file.read_bytes()
        assert str(source.PatientName).encode() not in raw
        assert str(source.StudyInstanceUID).encode() not in raw


def test_2d_secondary_capture_grey_float_and_rgb(shared_data: Path, tmp_path: Path) -> None:
    values16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1200).astype(np.uint16)
    PILImage.fromarray(values16).save(tmp_path / "x.png")
    grey = read_image(tmp_path / "x.png")
    export_dicom(grey, tmp_path / "grey", model_id=MODEL, modality="CR")
    np.testing.assert_array_equal(read_image(tmp_path / "grey").array, grey.array)

    floats = read_image(shared_data / "dipy_samples" / "t1_coronal_slice.npy")
    export_dicom(floats, tmp_path / "float", model_id=MODEL, modality="MR")
    back = read_image(tmp_path / "float").array
    value_range = float(floats.array.max() - floats.array.min())
    assert np.abs(back - floats.array).max() <= value_range / 4095 / 2 + 1e-6

    rgb = read_image(shared_data / "pydicom_samples" / "US1_UNCR.dcm")
    files = export_dicom(rgb, tmp_path / "rgb", model_id=MODEL)
    assert pydicom.dcmread(files[0]).PhotometricInterpretation == "RGB"
    np.testing.assert_array_equal(read_image(tmp_path / "rgb").array, rgb.array)


def test_labelled_batch_is_one_series(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 255, size=(5, 1, 28, 28)).astype(np.float32)
    files = export_dicom_images(images, tmp_path / "set", MODEL, labels=[0, 1, 1, 0, 1])
    datasets = _check_flags(files, "OT")
    assert [ds.ImageComments for ds in datasets][:2] == ["class label 0", "class label 1"]
    for ds, image in zip(datasets, images, strict=True):
        np.testing.assert_array_equal(ds.pixel_array, image[0])


def test_refusals(tmp_path: Path) -> None:
    volume = Image(np.zeros((1, 2, 3, 4), np.float32), spacing=(1, 1, 1))
    with pytest.raises(ExportError, match="CT or MR"):
        export_dicom(volume, tmp_path / "a", model_id=MODEL)
    with pytest.raises(ExportError, match="model id"):
        export_dicom(volume, tmp_path / "a", model_id=" ", modality="MR")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("user data")
    with pytest.raises(ExportError, match="not empty"):
        export_dicom(volume, tmp_path / "busy", model_id=MODEL, modality="MR")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "user data"


# The Debian dicom3tools (2022-06-18) predates the Synthetic Data attribute (0008,001C) in its
# dictionary, so it reports that one attribute as unrecognised; every other error counts.
KNOWN_DICTIONARY_GAP = "(0x0008,0x001c)"


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) absent")
def test_dciodvfy_finds_no_errors_in_any_kind_of_object(shared_data: Path, tmp_path: Path) -> None:
    kinds = {
        "ct-series": (read_image(shared_data / "pydicom_samples" / "eCT_Supplemental.dcm"), None),
        "mr-series": (read_image(shared_data / "nibabel_samples" / "anatomical.nii"), "MR"),
        "sc-8bit": (read_image(shared_data / "skimage_medical" / "microaneurysms.png"), None),
        "sc-16bit": (read_image(shared_data / "pydicom_samples" / "MR_small.dcm"), None),
        "sc-float": (read_image(shared_data / "dipy_samples" / "t1_coronal_slice.npy"), None),
        "sc-rgb": (read_image(shared_data / "pydicom_samples" / "US1_UNCR.dcm"), None),
    }
    for name, (image, modality) in kinds.items():
        files = export_dicom(image, tmp_path / name, model_id=MODEL, modality=modality)
        report = subprocess.run(
            ["dciodvfy", str(files[0])], capture_output=True, text=True, timeout=60
        )
        errors = [
            line
            for line in (report.stdout + report.stderr).splitlines()
            if line.startswith("Error") and KNOWN_DICTIONARY_GAP not in line
        ]
        assert errors == [], f"{name}: {errors}"
