"""Reading real files: values, geometry and metadata checked against pydicom, nibabel, Pillow and
tifffile reading the same files themselves."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image as PILImage

from medisynth.data.io import (
    detect_format,
    read_image,
    read_image_folder,
    read_medmnist,
)
from medisynth.errors import NonImageObjectError, ReadError, UnsupportedFormatError


# --------------------------------------------------------------------------- DICOM
def _pydicom_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "pydicom_samples").glob("*.dcm"))


def _expected_monochrome(ds: pydicom.Dataset) -> np.ndarray:
    """Reference values straight from pydicom: stored pixels, MONOCHROME1 flipped, then the
    modality LUT."""
    from pydicom.pixels import apply_modality_lut

    raw = ds.pixel_array.astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        bits = int(ds.BitsStored)
        raw = (2**bits - 1) - raw
    if "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "PixelValueTransformationSequence" in shared:
            t = shared.PixelValueTransformationSequence[0]
            return raw * float(t.RescaleSlope) + float(t.RescaleIntercept)
    return np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)


def test_every_pydicom_sample_reads_or_is_refused(shared_data: Path) -> None:
    """Each sample either reads with pydicom's values and spacing, or (SEG) is refused cleanly."""
    files = _pydicom_files(shared_data)
    assert len(files) >= 13
    for path in files:
        ds = pydicom.dcmread(path)
        if ds.Modality == "SEG":
            with pytest.raises(NonImageObjectError, match="segmentation") as info:
                read_image(path)
            assert path.name in str(info.value)
            continue
        image = read_image(path)
        assert image.modality == ds.Modality
        assert image.array.dtype == np.float32
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if ds.PhotometricInterpretation == "RGB":
            expected = np.moveaxis(ds.pixel_array, -1, 0)
            np.testing.assert_array_equal(image.array, expected)
            continue
        expected = _expected_monochrome(ds)
        if frames > 1 and image.meta["geometry"].startswith("sorted"):
            normal = np.cross(
                *np.array(
                    ds.SharedFunctionalGroupsSequence[0]
                    .PlaneOrientationSequence[0]
                    .ImageOrientationPatient,
                    float,
                ).reshape(2, 3)
            )
            positions = [
                np.array(f.PlanePositionSequence[0].ImagePositionPatient, float) @ normal
                for f in ds.PerFrameFunctionalGroupsSequence
            ]
            expected = expected[np.argsort(positions)]
        np.testing.assert_allclose(image.array[0], expected, rtol=1e-6, atol=1e-3)
        spacing = [float(v) for v in ds.get("PixelSpacing", [])]
        if spacing and min(spacing) > 0:
            assert image.spacing[-2:] == pytest.approx(spacing)
        elif spacing:  # RG1_UNCR stores 0\0: refused, 1 mm assumed and said so
            assert image.spacing[-2:] == (1.0, 1.0) and "absent" in image.meta["pixel_spacing"]


def test_ct_is_in_hounsfield_units(shared_data: Path) -> None:
    """Rescale Slope/Intercept is applied: air is near -1000 HU, stored values are not."""
    path = shared_data / "pydicom_samples" / "693_UNCR.dcm"
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert float(ds.RescaleIntercept) == -1024
    assert image.array.min() == pytest.approx(ds.pixel_array.min() - 1024)
    assert image.source_dtype == "int16"


def test_monochrome1_is_inverted(shared_data: Path) -> None:
    path = shared_data / "pydicom_samples" / "RG3_UNCR.dcm"
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert "MONOCHROME1" in image.meta["photometric_note"]
    bits = int(ds.BitsStored)
    np.testing.assert_array_equal(image.array[0], (2**bits - 1) - ds.pixel_array.astype(np.float32))


def _dicom_world(ds: pydicom.Dataset, row: float, col: float) -> np.ndarray:
    """DICOM PS3.3 C.7.6.2.1.1: LPS position of pixel (row, col), converted to RAS."""
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    lps = ipp + iop[:3] * col_spacing * col + iop[3:] * row_spacing * row
    return lps * np.array([-1, -1, 1])


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")
def test_single_slice_geometry_matches_dicom_formula_and_nibabel(shared_data: Path) -> None:
    from nibabel.nicom import dicomwrappers

    path = shared_data / "pydicom_samples" / "MR_small.dcm"
    ds = pydicom.dcmread(path)
    image = read_image(path)
    wrapper = dicomwrappers.wrapper_from_data(ds)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    for row, col in [(0, 0), (10, 3), (63, 63)]:
        ours = image.world_coordinates((row, col))
        np.testing.assert_allclose(ours, _dicom_world(ds, row, col), atol=1e-4)
        theirs = (lps_to_ras @ wrapper.affine @ np.array([row, col, 0, 1.0]))[:3]
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_series_folder_is_sorted_along_the_normal(shared_data: Path) -> None:
    folder = shared_data / "niivue_volumes" / "dicom_series"
    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    image = read_image(folder)
    assert image.array.shape == (1, 3, 512, 512)
    normal = np.cross(*np.array(datasets[0].ImageOrientationPatient, float).reshape(2, 3))
    ordered = sorted(datasets, key=lambda d: np.array(d.ImagePositionPatient, float) @ normal)
    positions = [np.array(d.ImagePositionPatient, float) @ normal for d in ordered]
    assert image.spacing[0] == pytest.approx(np.diff(positions).mean(), abs=1e-4)
    for k, ds in enumerate(ordered):
        np.testing.assert_array_equal(image.array[0, k], ds.pixel_array.astype(np.float32))
        for row, col in [(0, 0), (100, 400)]:
            np.testing.assert_allclose(
                image.world_coordinates((k, row, col)), _dicom_world(ds, row, col), atol=1e-3
            )
    assert not any("Patient" in key for key in image.meta), "no patient data in the metadata"


def test_enhanced_ct_frames_get_their_own_rescale(shared_data: Path) -> None:
    image = read_image(shared_data / "pydicom_samples" / "eCT_Supplemental.dcm")
    assert image.ndim == 3 and image.array.shape[1] == 2
    assert image.array.min() == pytest.approx(-1024)


def test_folder_with_several_series_asks_which(shared_data: Path) -> None:
    with pytest.raises(ReadError, match="series") as info:
        read_image(shared_data / "pydicom_samples")
    assert "series_uid" in str(info.value)


# --------------------------------------------------------------------------- NIfTI / MGH
NIFTI_SAMPLES = [
    "nibabel_samples/anatomical.nii",
    "nibabel_samples/example4d.nii.gz",
    "nibabel_samples/functional.nii",
    "dipy_samples/aniso_vox.nii.gz",
    "dipy_samples/S0_10slices.nii.gz",
    "dipy_samples/small_64D.nii",
    "nilearn_mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "niivue_volumes/t1/chris_t1.nii.gz",
    "niivue_volumes/t1/MNI152_2009_template.nii.gz",
    "niivue_volumes/flair/FLAIR.nii.gz",
    "niivue_volumes/freesurfer_bert/norm.mgz",
]


@pytest.mark.parametrize("name", NIFTI_SAMPLES)
def test_nifti_and_mgh_match_nibabel(shared_data: Path, name: str) -> None:
    """Values, affine and voxel sizes equal nibabel's own reading; 4D becomes channels."""
    path = shared_data / name
    reference = nib.load(path)
    data = np.asanyarray(reference.dataobj)
    image = read_image(path)
    if data.ndim == 3:
        data = data[..., None]
    np.testing.assert_array_equal(image.array, np.moveaxis(data, -1, 0).astype(np.float32))
    np.testing.assert_allclose(image.affine, reference.affine)
    assert image.spacing == pytest.approx(reference.header.get_zooms()[:3])
    assert image.source_dtype == reference.get_data_dtype().newbyteorder("=").name


def test_nifti_round_trip_keeps_an_oblique_affine(tmp_path: Path) -> None:
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.8, 2.5])
    affine[:3, 3] = [-10.0, 22.5, 3.0]
    data = np.random.default_rng(0).normal(size=(6, 7, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "oblique.nii.gz")
    image = read_image(tmp_path / "oblique.nii.gz")
    np.testing.assert_allclose(image.affine, affine, atol=1e-6)
    assert image.spacing == pytest.approx((0.7, 0.8, 2.5))
    np.testing.assert_array_equal(image.array[0], data)
    np.testing.assert_allclose(image.world_coordinates((1, 2, 3)), (affine @ [1, 2, 3, 1])[:3])


def test_nifti_scaling_is_applied(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(0.5, -100)
    nib.save(img, tmp_path / "scaled.nii")
    image = read_image(tmp_path / "scaled.nii")
    assert image.array.min() == pytest.approx(-100) and image.array.max() == pytest.approx(-88.5)


# --------------------------------------------------------------------------- raster images
def test_16bit_png_and_float_tiff_keep_their_values(tmp_path: Path) -> None:
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    PILImage.fromarray(values).save(tmp_path / "xray.png")
    image = read_image(tmp_path / "xray.png")
    assert image.source_dtype == "uint16"
    np.testing.assert_array_equal(image.array[0], values.astype(np.float32))

    floats = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32) * 1e4
    tifffile.imwrite(tmp_path / "map.tif", floats)
    image = read_image(tmp_path / "map.tif")
    np.testing.assert_array_equal(image.array[0], floats)
    assert image.source_dtype == "float32"

    stack = np.random.default_rng(2).integers(0, 4000, size=(4, 6, 7), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    image = read_image(tmp_path / "stack.tif")
    assert image.array.shape == (1, 4, 6, 7)
    np.testing.assert_array_equal(image.array[0], stack)


def test_colour_jpeg_and_lzw_tiff(shared_data: Path) -> None:
    """DRIVE's TIFFs are LZW-compressed RGB; the fundus JPEG is RGB."""
    tif = shared_data / "drive" / "training" / "images" / "21_training.tif"
    image = read_image(tif)
    with PILImage.open(tif) as pil:
        expected = np.moveaxis(np.asarray(pil.convert("RGB")), -1, 0)
    np.testing.assert_array_equal(image.array, expected)
    jpeg = read_image(shared_data / "skimage_medical" / "retina.jpg")
    assert jpeg.array.shape == (3, 1411, 1411)


def test_content_decides_the_format(tmp_path: Path) -> None:
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.png").rename(tmp_path / "scan.dcm")
    with pytest.raises(UnsupportedFormatError, match="extension says dicom but the content is png"):
        read_image(tmp_path / "scan.dcm")
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="unknown"):
        read_image(tmp_path / "notes.xyz")
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "noext", format="PNG")
    assert detect_format(tmp_path / "noext") == "png"


# --------------------------------------------------------------------------- collections
def test_breastmnist_splits_and_labels(shared_data: Path) -> None:
    path = shared_data / "breastmnist" / "breastmnist.npz"
    data = read_medmnist(path)
    raw = np.load(path)
    assert data.splits == ["train", "val", "test"]
    for split in data.splits:
        np.testing.assert_array_equal(data.images[split][:, 0], raw[f"{split}_images"])
        counts = np.bincount(raw[f"{split}_labels"].reshape(-1))
        assert data.class_counts(split) == {i: int(c) for i, c in enumerate(counts)}
    assert data.images["train"].dtype == np.float32 and data.source_dtype == "uint8"


def test_adrenalmnist3d_is_channel_first_3d(shared_data: Path) -> None:
    data = read_medmnist(shared_data / "adrenalmnist3d" / "adrenalmnist3d.npz")
    assert data.images["train"].shape == (1188, 1, 28, 28, 28)
    assert data.labels["train"].shape == (1188,)


def test_drive_folder_reads_images_and_masks(shared_data: Path) -> None:
    images = read_image_folder(shared_data / "drive" / "training" / "images")
    masks = read_image_folder(shared_data / "drive" / "training" / "1st_manual")
    assert images.images.shape == (20, 3, 584, 565)
    assert masks.images.shape == (20, 1, 584, 565)
    assert set(np.unique(masks.images)) == {0.0, 255.0}
    assert [f.name[:2] for f in images.files] == [f.name[:2] for f in masks.files]


def _write_png(path: Path, value: int, shape: tuple[int, int] = (6, 5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.full(shape, value, np.uint8)).save(path)


def test_folder_labels_from_subfolders_and_csv(tmp_path: Path) -> None:
    for i in range(3):
        _write_png(tmp_path / "benign" / f"b{i}.png", 10 + i)
    for i in range(2):
        _write_png(tmp_path / "malignant" / f"m{i}.png", 200 + i)
    folder = read_image_folder(tmp_path)
    assert folder.class_names == ["benign", "malignant"]
    assert folder.class_counts() == {"benign": 3, "malignant": 2}
    assert folder.images[folder.labels == 1].min() >= 200

    flat = tmp_path / "flat"
    rows = []
    for i in range(4):
        _write_png(flat / f"x{i}.png", i)
        rows.append({"filename": f"x{i}.png", "label": str(i % 2)})
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["filename", "label"])
        writer.writeheader()
        writer.writerows(rows)
    by_csv = read_image_folder(flat, labels=tmp_path / "labels.csv")
    np.testing.assert_array_equal(by_csv.labels, [0, 1, 0, 1])


def test_mixed_shapes_raise_or_are_skipped(tmp_path: Path) -> None:
    for i in range(3):
        _write_png(tmp_path / f"ok{i}.png", i)
    _write_png(tmp_path / "odd.png", 9, shape=(7, 7))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    with pytest.raises(ReadError, match="broken.png"):
        read_image_folder(tmp_path)
    folder = read_image_folder(tmp_path, skip_bad=True)
    assert len(folder.files) == 3
    assert sorted(f.name for f, _ in folder.skipped) == ["broken.png", "odd.png"]
    (tmp_path / "broken.png").unlink()
    with pytest.raises(ReadError, match="mixed shapes.*odd.png"):
        read_image_folder(tmp_path)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="empty"):
        read_image(tmp_path)
    with pytest.raises(ReadError, match="no image files"):
        read_image_folder(tmp_path)


def test_folder_of_volumes_keeps_a_shared_spacing(tmp_path: Path) -> None:
    import nibabel as nib

    def volume(name: str, zooms: tuple[float, float, float]) -> None:
        nib.save(
            nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.diag([*zooms, 1.0])),
            str(tmp_path / name),
        )

    volume("a.nii.gz", (1.0, 1.0, 2.5))
    volume("b.nii.gz", (1.0, 1.0, 2.5))
    folder = read_image_folder(tmp_path)
    assert folder.images.shape == (2, 1, 4, 5, 6)
    assert folder.spacing == (1.0, 1.0, 2.5)
    volume("c.nii.gz", (1.0, 1.0, 1.0))
    assert read_image_folder(tmp_path).spacing is None
