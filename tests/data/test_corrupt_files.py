"""read_image on damaged inputs: every failure is a MedisynthError that names the file.

Each test copies a real sample file into ``tmp_path``, damages the copy (truncation, wrong
extension, corrupt header field, broken DICOM series) and checks the reader's contract: an
:class:`~medisynth.data.image.Image` or a :class:`~medisynth.errors.ReadError` whose message
names the file or folder, quickly and without large allocations.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

import medisynth.data.limits as limits
from medisynth.data.image import Image
from medisynth.data.io import read_image
from medisynth.errors import (
    MedisynthError,
    NonImageObjectError,
    ReadError,
    SeriesError,
    UnsupportedFormatError,
)

NII = ("nibabel_samples", "anatomical.nii")  # big-endian int16 (33, 41, 25)
NII_GZ = ("dipy_samples", "aniso_vox.nii.gz")  # int16 (58, 58, 24)
CT = ("pydicom_samples", "CT_small.dcm")  # explicit VR little endian, 128x128 int16
SEG = ("pydicom_samples", "liver.dcm")  # DICOM SEG, no image
PNG = ("skimage_medical", "microaneurysms.png")
JPEG = ("skimage_medical", "retina.jpg")
NPY = ("dipy_samples", "t1_coronal_slice.npy")

#: A read that fails on purpose must not take longer than this (s), nor trace more memory.
FAST_SECONDS = 5.0
SMALL_PEAK_BYTES = 64 * 2**20


def _src(shared_data: Path, rel: tuple[str, str]) -> Path:
    return shared_data.joinpath(*rel)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _expect(path: Path, error: type[ReadError] = ReadError, name: str | None = None) -> ReadError:
    """read_image(path) raises ``error``, and its message names the file (or ``name``)."""
    with pytest.raises(error) as info:
        read_image(path)
    assert (name or path.name) in str(info.value), str(info.value)
    return info.value


# --- truncation --------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 100, 347, 348, 352, 1000, "half", "last"])
def test_truncated_nifti_raises(shared_data: Path, tmp_path: Path, cut: int | str) -> None:
    """A .nii cut inside the header, right after it or inside the voxel data is refused."""
    data = _src(shared_data, NII).read_bytes()
    n = {"half": len(data) // 2, "last": len(data) - 1}.get(str(cut), cut)
    assert isinstance(n, int)
    _expect(_write(tmp_path, "cut.nii", data[:n]))


@pytest.mark.parametrize("cut", [2, 10, 100, 1000, "half", "minus100"])
def test_truncated_nifti_gz_stream_raises(
    shared_data: Path, tmp_path: Path, cut: int | str
) -> None:
    """A .nii.gz whose compressed stream is cut short is refused."""
    data = _src(shared_data, NII_GZ).read_bytes()
    n = {"half": len(data) // 2, "minus100": len(data) - 100}.get(str(cut), cut)
    assert isinstance(n, int)
    _expect(_write(tmp_path, "cut.nii.gz", data[:n]))


@pytest.mark.parametrize("cut", [100, 347, 352, 5000, "half", "last"])
def test_truncated_nifti_inside_valid_gzip_raises(
    shared_data: Path, tmp_path: Path, cut: int | str
) -> None:
    """A complete gzip stream holding a truncated NIfTI is refused (inner size check)."""
    inner = gzip.decompress(_src(shared_data, NII_GZ).read_bytes())
    n = {"half": len(inner) // 2, "last": len(inner) - 1}.get(str(cut), cut)
    assert isinstance(n, int)
    _expect(_write(tmp_path, "inner_cut.nii.gz", gzip.compress(inner[:n], mtime=0)))


@pytest.mark.parametrize(
    ("start", "junk"),
    [(22, None), (20, b"\xff" * 20), (10, b"\0" * 20)],
    ids=["flip", "ff", "zeros"],
)
def test_nifti_gz_with_corrupt_deflate_data_raises(
    shared_data: Path, tmp_path: Path, start: int, junk: bytes | None
) -> None:
    """A .nii.gz whose deflate stream is damaged right after the gzip header (one flipped bit,
    or 20 bytes overwritten) is refused with a ReadError, not a bare zlib.error."""
    data = bytearray(_src(shared_data, NII_GZ).read_bytes())
    if junk is None:
        data[start] ^= 0x01
    else:
        data[start : start + len(junk)] = junk
    _expect(_write(tmp_path, "deflate.nii.gz", bytes(data)))


@pytest.mark.parametrize(
    "damage", ["trailer_cut_4", "trailer_cut_8", "crc_flipped", "isize_flipped"]
)
def test_nifti_gz_with_broken_gzip_trailer_raises(
    shared_data: Path, tmp_path: Path, damage: str
) -> None:
    """A .nii.gz whose gzip trailer (CRC-32, ISIZE) is cut or wrong is refused: the trailer is
    the only integrity check of the compressed voxels."""
    data = bytearray(_src(shared_data, NII_GZ).read_bytes())
    if damage == "trailer_cut_4":
        data = data[:-4]
    elif damage == "trailer_cut_8":
        data = data[:-8]
    elif damage == "crc_flipped":
        data[-6] ^= 0xFF
    else:
        data[-2] ^= 0xFF
    _expect(_write(tmp_path, f"{damage}.nii.gz", bytes(data)))


def test_nifti_gz_with_corrupted_stored_voxels_raises(shared_data: Path, tmp_path: Path) -> None:
    """A flipped byte inside the (stored, uncompressed-deflate) voxel data of a .nii.gz is caught
    by the gzip CRC instead of returning silently wrong intensities."""
    inner = gzip.decompress(_src(shared_data, NII_GZ).read_bytes())
    stored = bytearray(gzip.compress(inner, compresslevel=0, mtime=0))
    stored[len(stored) // 2] ^= 0x01
    _expect(_write(tmp_path, "flipped.nii.gz", bytes(stored)))


def _pixel_data_offset(data: bytes) -> int:
    """Offset of the (7FE0,0010) Pixel Data element header in an explicit VR LE file."""
    at = data.rfind(b"\xe0\x7f\x10\x00OW")
    assert at > 0
    return at


@pytest.mark.parametrize("cut", [64, 131, 200, 1000, "before_pixels", "in_pixels", "mid_pixels"])
def test_truncated_dicom_raises(shared_data: Path, tmp_path: Path, cut: int | str) -> None:
    """A DICOM file cut in the preamble, the meta header, the dataset or the pixels is refused."""
    data = _src(shared_data, CT).read_bytes()
    pixels = _pixel_data_offset(data)
    where = {"before_pixels": pixels, "in_pixels": pixels + 112, "mid_pixels": pixels + 16384}
    n = where.get(str(cut), cut)
    assert isinstance(n, int)
    _expect(_write(tmp_path, "cut.dcm", data[:n]))


@pytest.mark.parametrize("cut", [200, 1000, "before_pixels"])
def test_truncated_dicom_image_is_not_called_a_non_image_object(
    shared_data: Path, tmp_path: Path, cut: int | str
) -> None:
    """A CT image cut before its pixel data is a truncated image, not a DICOM object that 'holds
    no image' (NonImageObjectError would tell the user to look for another series)."""
    data = _src(shared_data, CT).read_bytes()
    n = _pixel_data_offset(data) if cut == "before_pixels" else cut
    assert isinstance(n, int)
    err = _expect(_write(tmp_path, "cut.dcm", data[:n]))
    assert not isinstance(err, NonImageObjectError), str(err)


@pytest.mark.parametrize("cut", [8, 16, 33, 41, 100, "half", "minus100"])
def test_truncated_png_raises(shared_data: Path, tmp_path: Path, cut: int | str) -> None:
    """A PNG cut in the signature, the IHDR chunk or the compressed pixel data is refused."""
    data = _src(shared_data, PNG).read_bytes()
    n = {"half": len(data) // 2, "minus100": len(data) - 100}.get(str(cut), cut)
    assert isinstance(n, int)
    _expect(_write(tmp_path, "cut.png", data[:n]))


# --- empty, foreign and mislabelled files ------------------------------------------------------

ALL_EXTENSIONS = [".nii", ".nii.gz", ".mgz", ".dcm", ".png", ".jpg", ".tif", ".gif", ".bmp", ".npy"]


@pytest.mark.parametrize("ext", ALL_EXTENSIONS)
def test_zero_byte_file_raises(tmp_path: Path, ext: str) -> None:
    """An empty file with any supported extension is refused with a message naming it."""
    _expect(_write(tmp_path, f"empty{ext}", b""))


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".dcm", ".png", ".npy"])
def test_text_file_renamed_raises(tmp_path: Path, ext: str) -> None:
    """A text file given an image extension is refused with a message naming it."""
    _expect(_write(tmp_path, f"notes{ext}", b"patient notes, not an image\n" * 40))


@pytest.mark.parametrize(
    ("rel", "name"),
    [
        (PNG, "image.dcm"),
        (JPEG, "photo.png"),
        (CT, "slice.png"),
        (NII, "volume.dcm"),
        (PNG, "image.nii.gz"),
    ],
)
def test_content_contradicting_extension_raises(
    shared_data: Path, tmp_path: Path, rel: tuple[str, str], name: str
) -> None:
    """A valid file under another format's extension raises UnsupportedFormatError naming it."""
    path = tmp_path / name
    shutil.copy(_src(shared_data, rel), path)
    _expect(path, UnsupportedFormatError)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_named_pipe_raises_instead_of_blocking(tmp_path: Path) -> None:
    """A path that is a FIFO (no writer) is refused or read within seconds, never waited on
    forever. If the read blocks, the test opens the writing end itself to release it."""
    fifo = tmp_path / "stream.nii"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_image(fifo)
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - reported below
            outcome.append(err)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(FAST_SECONDS)
    blocked = thread.is_alive()
    if blocked:
        with open(fifo, "wb"):
            pass  # release the blocked open()
        thread.join(FAST_SECONDS)
    assert not blocked, "read_image blocked on a named pipe"
    if outcome and outcome[0] is not None:
        assert isinstance(outcome[0], MedisynthError), repr(outcome[0])
        assert fifo.name in str(outcome[0])


# --- oversized declarations --------------------------------------------------------------------

HUGE = (30000, 30000, 30000)


def _huge_nifti() -> bytes:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(HUGE)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4 + b"\0" * 1024


def _huge_mgh() -> bytes:
    header = nib.freesurfer.mghformat.MGHHeader()
    header.set_data_shape(HUGE)
    return gzip.compress(header.binaryblock + b"\0" * 1024, mtime=0)


def _huge_npy() -> bytes:
    header = {"descr": "<i2", "fortran_order": False, "shape": HUGE}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + b"\0" * 1024


def _huge_dicom(shared_data: Path) -> bytes:
    """CT_small with Rows = Columns = 65535 and Number of Frames = 2**31 - 1 inserted."""
    data = bytearray(_src(shared_data, CT).read_bytes())
    for element in (0x10, 0x11):
        key = struct.pack("<HH", 0x28, element) + b"US\x02\x00"
        at = data.index(key) + len(key)
        data[at : at + 2] = struct.pack("<H", 65535)
    frames = b"2147483647"
    rows = data.index(struct.pack("<HH", 0x28, 0x10) + b"US")
    element = struct.pack("<HH", 0x28, 0x08) + b"IS" + struct.pack("<H", len(frames)) + frames
    return bytes(data[:rows] + element + data[rows:])


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz", "huge.mgz", "huge.npy", "huge.dcm"])
def test_gigantic_declared_shape_raises_fast_without_allocating(
    shared_data: Path, tmp_path: Path, name: str
) -> None:
    """A header claiming 30000^3 voxels (or 65535^2 x 2^31 DICOM frames) is refused in seconds,
    with under 64 MiB of traced allocations."""
    if name == "huge.nii":
        data = _huge_nifti()
    elif name == "huge.nii.gz":
        data = gzip.compress(_huge_nifti(), mtime=0)
    elif name == "huge.mgz":
        data = _huge_mgh()
    elif name == "huge.npy":
        data = _huge_npy()
    else:
        data = _huge_dicom(shared_data)
    path = _write(tmp_path, name, data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        _expect(path)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < FAST_SECONDS
    assert peak < SMALL_PEAK_BYTES, f"{peak / 2**20:.0f} MiB traced while refusing {name}"


@pytest.mark.parametrize("rel", [NII, NII_GZ, NPY, CT, PNG], ids=lambda rel: rel[1])
def test_max_elements_caps_every_format(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rel: tuple[str, str]
) -> None:
    """Lowering medisynth.data.limits.MAX_ELEMENTS below a file's voxel count makes that file's read
    fail (the cap is honoured by every reader), while it reads with the default cap."""
    path = tmp_path / rel[1]
    shutil.copy(_src(shared_data, rel), path)
    assert read_image(path).array.size > 1000
    monkeypatch.setattr(limits, "MAX_ELEMENTS", 1000)
    _expect(path)


# --- corrupt header values ---------------------------------------------------------------------


def _patched_dicom(data: bytes, group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """Overwrite a short explicit-VR element's value in place (same length, space padded)."""
    key = struct.pack("<HH", group, element) + vr
    at = data.index(key)
    length = struct.unpack("<H", data[at + 6 : at + 8])[0]
    start = at + 8
    return data[:start] + value.ljust(length)[:length] + data[start + length :]


@pytest.mark.parametrize(
    ("element", "value"),
    [(0x1053, b"ab"), (0x1052, b"x"), (0x1052, b"1e999"), (0x1052, b"nan")],
    ids=["slope_ab", "intercept_x", "intercept_inf", "intercept_nan"],
)
def test_dicom_with_non_numeric_rescale_raises_read_error(
    shared_data: Path, tmp_path: Path, element: int, value: bytes
) -> None:
    """A Rescale Slope/Intercept that is not a finite number is a ReadError naming the file."""
    data = _patched_dicom(_src(shared_data, CT).read_bytes(), 0x28, element, b"DS", value)
    _expect(_write(tmp_path, "rescale.dcm", data))


def _image_or_named_error(path: Path) -> Image | None:
    """The contract: read_image(path) returns an Image, or raises a MedisynthError naming the
    file (then None). Any other exception propagates and fails the test."""
    try:
        return read_image(path)
    except MedisynthError as err:
        assert path.name in str(err), str(err)
        return None


def test_rgb24_nifti_reads_or_raises_medisynth_error(tmp_path: Path) -> None:
    """A NIfTI of datatype RGB24 (a structured dtype) gives 3 channels or a MedisynthError,
    never a numpy casting error."""
    rgb = np.zeros((4, 5, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["G"] = 7
    path = tmp_path / "rgb.nii"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    image = _image_or_named_error(path)
    if image is not None:
        assert image.array.shape == (3, 4, 5, 6)
        assert image.array.dtype == np.float32


TRANSFER_SYNTAX = b"1.2.840.10008.1.2.1\x00"  # explicit VR little endian, as stored in the meta


@pytest.mark.parametrize(
    "uid", [b"1.2.3.4.5.6.7.8.9.10", b"0.2.840.10008.1.2.1\x00"], ids=["private", "one_bit_off"]
)
def test_dicom_with_unknown_transfer_syntax_raises_read_error(
    shared_data: Path, tmp_path: Path, uid: bytes
) -> None:
    """A Transfer Syntax UID that names no transfer syntax is a ReadError naming the file."""
    data = _src(shared_data, CT).read_bytes()
    assert data.count(TRANSFER_SYNTAX) == 1 and len(uid) == len(TRANSFER_SYNTAX)
    _expect(_write(tmp_path, "syntax.dcm", data.replace(TRANSFER_SYNTAX, uid)))


def test_dicom_element_with_unknown_vr_reads_or_raises_medisynth_error(
    shared_data: Path, tmp_path: Path
) -> None:
    """One flipped bit turning the VR of Spacing Between Slices (0018,0088) from DS into the
    unknown 'DR' gives an Image or a MedisynthError, not pydicom's NotImplementedError."""
    tag = struct.pack("<HH", 0x18, 0x88)
    data = _src(shared_data, CT).read_bytes()
    assert data.count(tag + b"DS") == 1
    _image_or_named_error(_write(tmp_path, "vr.dcm", data.replace(tag + b"DS", tag + b"DR")))


# --- DICOM series folders ----------------------------------------------------------------------

#: Slice positions (mm along +z) of the synthetic series and the file name order (shuffled).
STEP = 2.5
FILE_ORDER = [3, 0, 4, 1, 2]


def _write_series(shared_data: Path, folder: Path, offsets: list[float]) -> list[Path]:
    """Write CT_small as one slice per offset (mm along its normal, +z), one new series.

    Each slice has its own SOP Instance UID and Instance Number, a marker pixel value that grows
    with the offset, and file names in an order that differs from the position order.
    """
    template = pydicom.dcmread(_src(shared_data, CT))
    series_uid = generate_uid()
    x, y, z = (float(v) for v in template.ImagePositionPatient)
    pixels = template.pixel_array
    folder.mkdir()
    files = []
    for k, offset in enumerate(offsets):
        ds = template.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [x, y, z + offset]
        ds.SpacingBetweenSlices = STEP  # SliceThickness stays 5 mm: overlapping reconstruction
        marked = pixels.copy()
        marked[0, 0] = 100 * (k + 1)
        ds.PixelData = marked.tobytes()
        path = folder / f"IM{FILE_ORDER[k % len(FILE_ORDER)]:04d}_{k}.dcm"
        ds.save_as(path)
        files.append(path)
    return files


def test_valid_series_reads_sorted_with_slice_spacing(shared_data: Path, tmp_path: Path) -> None:
    """Five slices 2.5 mm apart (5 mm thick) read as (1, 5, 128, 128), ordered by position not by
    file name, with a 2.5 mm slice spacing in .spacing and the affine."""
    folder = tmp_path / "ct_series"
    _write_series(shared_data, folder, [k * STEP for k in range(5)])
    image = read_image(folder)
    assert image.array.shape == (1, 5, 128, 128)
    assert image.array.dtype == np.float32
    assert image.spacing[0] == pytest.approx(STEP, rel=1e-6)
    assert np.linalg.norm(image.affine[:3, 0]) == pytest.approx(STEP, rel=1e-6)
    assert np.all(np.diff(image.array[0, :, 0, 0]) > 0), "slices not sorted along the normal"


def test_series_with_missing_middle_slice_raises(shared_data: Path, tmp_path: Path) -> None:
    """Removing the middle file of a 5-slice series gives a SeriesError saying 'missing'."""
    folder = tmp_path / "gap_series"
    files = _write_series(shared_data, folder, [k * STEP for k in range(5)])
    files[2].unlink()
    err = _expect(folder, SeriesError)
    assert "missing" in str(err).lower()


def test_series_with_uneven_spacing_raises(shared_data: Path, tmp_path: Path) -> None:
    """Slices at 0, 2.5, 5, 8.2, 10.7 mm give a SeriesError saying 'inconsistent'."""
    folder = tmp_path / "uneven_series"
    _write_series(shared_data, folder, [0.0, 2.5, 5.0, 8.2, 10.7])
    err = _expect(folder, SeriesError)
    assert "inconsistent" in str(err).lower()


def test_empty_folder_raises(tmp_path: Path) -> None:
    """An empty folder is a ReadError naming the folder."""
    folder = tmp_path / "nothing_here"
    folder.mkdir()
    _expect(folder)


def test_folder_with_only_a_seg_object_raises_non_image_error(
    shared_data: Path, tmp_path: Path
) -> None:
    """A folder whose only DICOM file is a SEG object raises NonImageObjectError naming the folder
    (not a generic 'no DICOM files' error)."""
    folder = tmp_path / "seg_only"
    folder.mkdir()
    shutil.copy(_src(shared_data, SEG), folder / "liver.dcm")
    _expect(folder, NonImageObjectError)
