"""DICOM reading: single images, enhanced multi-frame objects and series folders.

Pixel values go through the Modality LUT (Rescale Slope/Intercept, so CT is in HU), MONOCHROME1 is
inverted to the MONOCHROME2 convention, and colour objects become RGB channels. Geometry comes
from Image Position/Orientation (Patient) and Pixel Spacing; series and multi-frame objects are
sorted along the slice normal and checked for missing slices and uneven spacing. Objects that
hold no image (SEG, SR, RT structures/plans/doses, presentation states) are refused.

Arrays are ``(C, rows, cols)`` for one frame and ``(C, slices, rows, cols)`` for volumes; the
affine maps those indices to RAS+ mm (DICOM's LPS with x and y negated).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medisynth.data.image import Image, combine_fingerprints, sha256_file
from medisynth.data.limits import check_elements
from medisynth.errors import MedisynthError, NonImageObjectError, ReadError, SeriesError

log = logging.getLogger(__name__)

#: Relative tolerance on slice spacing before a series is called uneven.
SPACING_TOLERANCE = 0.05

_NON_IMAGE_PREFIXES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.66": "a segmentation or registration object (SEG/REG/fiducials)",
    "1.2.840.10008.5.1.4.1.1.88": "a structured report (SR)",
    "1.2.840.10008.5.1.4.1.1.481": "a radiotherapy object (RT)",
    "1.2.840.10008.5.1.4.1.1.11": "a presentation state",
    "1.2.840.10008.5.1.4.1.1.104": "an encapsulated document (PDF/CDA)",
    "1.2.840.10008.5.1.4.1.1.9": "a waveform",
    "1.2.840.10008.5.1.4.1.1.67": "a real-world value map",
    "1.2.840.10008.5.1.4.1.1.68": "a surface object",
}
_COLOUR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}

#: Attributes that the DICOM Basic Application Level Confidentiality Profile removes, empties or
#: replaces (PS3.15 Annex E, Table E.1-1; checked against the 2024b edition): the ones an image
#: reader is most likely to meet. medisynth never keeps them as image metadata, never prints them
#: (``medisynth info``) and never writes them into a checkpoint or model package. Free-text
#: descriptions are on the list because sites type names, dates and IDs into them.
BASIC_PROFILE_REMOVED = (
    # the patient
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientAddress",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientComments",
    "EthnicGroup",
    "MedicalRecordLocator",
    # the study, series and acquisition: identifiers, dates and times
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
    "ContentDate",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    # free text
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "DerivationDescription",
    "ImageComments",
    "StudyComments",
    "AdditionalPatientHistory",
    "RequestedProcedureDescription",
    "PerformedProcedureStepDescription",
    "AcquisitionDeviceProcessingDescription",
    # people and places
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
    # instance UIDs
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "MediaStorageSOPInstanceUID",
    "ReferencedSOPInstanceUID",
)

#: Technical attributes kept as image metadata and shown by ``medisynth info``. None of them is
#: in Table E.1-1 (Manufacturer and ManufacturerModelName are not; the Basic Profile keeps them)
#: and none names a patient, a site or a date; ``tests/data/test_describe.py`` checks that this
#: list and :data:`BASIC_PROFILE_REMOVED` do not overlap.
KEPT_ATTRIBUTES = (
    "Modality",
    "SyntheticData",
    "SOPClassUID",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "ImageType",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "PixelSpacing",
    "SliceThickness",
    "BitsStored",
    "PixelRepresentation",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "MagneticFieldStrength",
    "RepetitionTime",
    "EchoTime",
    "KVP",
    "ConvolutionKernel",
)


@contextlib.contextmanager
def _damaged_dicom(path: Path) -> Iterator[None]:
    """pydicom decodes elements lazily, so a damaged element can fail at first use anywhere:
    turn such failures into a ReadError naming the file."""
    try:
        yield
    except MedisynthError:
        raise
    except Exception as err:
        raise ReadError(
            path,
            f"damaged DICOM file ({type(err).__name__}: {err})",
            "re-export it from the source system",
        ) from err


def is_dicom_file(path: Path) -> bool:
    """True when the file has the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _dcmread(path: Path, stop_before_pixels: bool = False) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = not is_dicom_file(path)  # files without a preamble (old ACR-NEMA style)
    try:
        ds = pydicom.dcmread(path, force=force, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as err:
        raise ReadError(path, f"not a DICOM file ({err})", "check the file's format") from err
    except Exception as err:
        raise ReadError(
            path,
            f"corrupt or truncated DICOM file ({type(err).__name__}: {err})",
            "re-export it from the source system",
        ) from err
    if force and "SOPClassUID" not in ds and "PixelData" not in ds:
        raise ReadError(path, "not a DICOM file (no DICOM preamble and no DICOM image elements)")
    return ds


def _non_image_reason(ds: Any) -> str | None:
    """Why a DICOM object holds no image, or None when it is an image object."""
    sop = str(ds.get("SOPClassUID", ""))
    for prefix, what in _NON_IMAGE_PREFIXES.items():
        if sop.startswith(prefix):
            return f"this DICOM object is {what} (SOP Class {sop}), not an image"
    modality = str(ds.get("Modality", ""))
    if modality in ("SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "KO", "DOC"):
        return f"this DICOM object has Modality {modality}, not an image"
    return None


def _refuse_non_image(ds: Any, path: Path) -> None:
    reason = _non_image_reason(ds)
    if reason is not None:
        raise NonImageObjectError(path, reason, "give the image series it refers to instead")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ReadError(
            path,
            "the DICOM object has no pixel data (a truncated or damaged file, or an object "
            "that is not an image)",
            "re-export it from the source system",
        )


def _meta(ds: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for keyword in KEPT_ATTRIBUTES:
        if keyword in ds:
            value = ds.data_element(keyword).value
            if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
                value = [_plain(v) for v in value]
            else:
                value = _plain(value)
            meta[keyword] = value
    meta["format"] = "dicom"
    return meta


def _plain(value: Any) -> Any:
    if isinstance(value, (int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _functional(ds: Any, frame: int | None, sequence: str, keyword: str) -> Any:
    """Look a value up in the per-frame, then shared functional groups, then the top level."""
    groups = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        per_frame = ds.PerFrameFunctionalGroupsSequence
        if frame < len(per_frame):
            groups.append(per_frame[frame])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        if sequence in group and len(group[sequence].value) and keyword in group[sequence][0]:
            return group[sequence][0][keyword].value
    return ds.get(keyword)


def _pixels(ds: Any, path: Path) -> np.ndarray:
    """Stored values as float32, frames first, channels last for colour."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    check_elements(path, (frames, int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), samples))
    try:
        arr = ds.pixel_array
    except Exception as err:
        name, compressed = "unknown transfer syntax", False
        with contextlib.suppress(Exception):
            syntax = ds.file_meta.TransferSyntaxUID
            name, compressed = str(syntax.name), bool(syntax.is_compressed)
        hint = (
            "install a decoder for this compression (e.g. pylibjpeg with pylibjpeg-openjpeg)"
            if compressed
            else "the pixel data is damaged; re-export the file"
        )
        raise ReadError(path, f"cannot decode pixel data ({name}): {err}", hint) from err
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(arr, ds)
        except Exception as err:
            raise ReadError(path, f"cannot apply the palette colour table: {err}") from err
    return np.asarray(arr)


def _rescaled(ds: Any, stored: np.ndarray, frames: int, path: Path) -> np.ndarray:
    """Apply MONOCHROME1 inversion and the Modality LUT; returns float32."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    values = stored.astype(np.float32)
    if photometric == "MONOCHROME1":
        bits = int(ds.get("BitsStored", 16))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        values = (low + high) - values
    if photometric in _COLOUR or photometric == "PALETTE COLOR":
        return values
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        try:
            return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
        except Exception as err:
            raise ReadError(path, f"cannot apply the Modality LUT: {err}") from err
    frame_values = values if frames > 1 else values[None]
    for index in range(len(frame_values)):
        frame = index if frames > 1 else None
        slope = _functional(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _functional(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
        try:
            slope = 1.0 if slope in (None, "") else float(slope)
            intercept = 0.0 if intercept in (None, "") else float(intercept)
        except (TypeError, ValueError):
            raise ReadError(
                path, f"invalid Rescale Slope/Intercept ({slope!r}, {intercept!r})"
            ) from None
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
            raise ReadError(path, f"invalid Rescale Slope/Intercept ({slope}, {intercept})")
        if slope != 1.0 or intercept != 0.0:
            frame_values[index] = frame_values[index] * np.float32(slope) + np.float32(intercept)
    return values


class _FrameGeometry:
    """Position, orientation and spacing of one frame (``None`` where the object has none)."""

    def __init__(self, ds: Any, frame: int | None) -> None:
        ipp = _functional(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
        iop = _functional(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _functional(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
        self.spacing_source = "PixelSpacing"
        if spacing is None and "ImagerPixelSpacing" in ds:
            spacing, self.spacing_source = ds.ImagerPixelSpacing, "ImagerPixelSpacing"
        thickness = _functional(ds, frame, "PixelMeasuresSequence", "SliceThickness")
        self.position = _floats(ipp, 3)
        self.orientation = _floats(iop, 6)
        self.pixel_spacing = _floats(spacing, 2)
        if self.pixel_spacing is not None and np.any(self.pixel_spacing <= 0):
            self.pixel_spacing = None
        self.thickness = _float_or_none(thickness)
        between = ds.get("SpacingBetweenSlices")
        self.between = _float_or_none(between)

    @property
    def has_plane(self) -> bool:
        return self.position is not None and self.orientation is not None

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(direction of increasing column index, of increasing row index, slice normal)."""
        assert self.orientation is not None
        along_row, along_col = self.orientation[:3], self.orientation[3:]
        return along_row, along_col, np.cross(along_row, along_col)


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.all(np.isfinite(out)) else None


def _float_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) and out > 0 else None


def _affine(
    geometry: _FrameGeometry, slice_step: np.ndarray | None, origin: np.ndarray | None
) -> tuple[np.ndarray, tuple[float, float]]:
    """RAS affine for (slice, row, col) indices, and the in-plane spacing (row, col)."""
    row_spacing, col_spacing = (
        (1.0, 1.0) if geometry.pixel_spacing is None else tuple(geometry.pixel_spacing)
    )
    lps = np.eye(4)
    if geometry.orientation is not None:
        along_row, along_col, normal = geometry.axes()
    else:
        along_row, along_col, normal = np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]
    if slice_step is None:
        slice_step = normal * (geometry.thickness or geometry.between or 1.0)
    lps[:3, 0] = slice_step
    lps[:3, 1] = along_col * row_spacing
    lps[:3, 2] = along_row * col_spacing
    if origin is not None:
        lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, (float(row_spacing), float(col_spacing))


def _stack_positions(
    geometries: Sequence[_FrameGeometry], names: Sequence[str], path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Sort frames along the slice normal; return (order, slice step vector). Checks spacing."""
    first = geometries[0]
    assert first.orientation is not None
    for geometry, name in zip(geometries, names, strict=True):
        assert geometry.orientation is not None
        if not np.allclose(geometry.orientation, first.orientation, atol=1e-4):
            raise SeriesError(
                path,
                f"{name} has another orientation than the first slice "
                f"({geometry.orientation.round(4).tolist()} vs "
                f"{first.orientation.round(4).tolist()})",
                "split the series by orientation before reading it",
            )
    normal = first.axes()[2]
    positions = np.array([g.position for g in geometries])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    steps = np.diff(along)
    if np.any(steps < 1e-3):
        dup = int(np.argmin(steps))
        raise SeriesError(
            path,
            f"{names[order[dup]]} and {names[order[dup + 1]]} lie at the same position "
            f"({along[dup]:.3f} mm along the normal): several images per location "
            "(echoes, time points or a repeated acquisition)",
            "keep one image per position",
        )
    spacing = float(np.median(steps))
    bad = np.abs(steps - spacing) > SPACING_TOLERANCE * spacing + 1e-3
    if np.any(bad):
        at = int(np.flatnonzero(bad)[0])
        gap = steps[at]
        ratio = gap / spacing
        where = (
            f"between {names[order[at]]} ({along[at]:.3f} mm) and "
            f"{names[order[at + 1]]} ({along[at + 1]:.3f} mm)"
        )
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.2:
            problem = (
                f"missing slice(s): a gap of {gap:.3f} mm {where}, where the spacing is "
                f"{spacing:.3f} mm (about {round(ratio) - 1} slice(s) missing)"
            )
            hint = "add the missing files or read the slices separately"
        else:
            problem = f"inconsistent slice spacing: {gap:.3f} mm {where}, median {spacing:.3f} mm"
            hint = "resample the series on the scanner/PACS side or read the slices separately"
        raise SeriesError(path, problem, hint)
    step = (positions[order[-1]] - positions[order[0]]) / (len(order) - 1)
    return order, step


def _image_from_frames(
    values: np.ndarray,
    colour: bool,
    geometries: Sequence[_FrameGeometry],
    names: Sequence[str],
    ds: Any,
    path: Path,
    fingerprint: str,
    extra_meta: dict[str, Any],
) -> Image:
    """Build an Image from frames ``(F, R, C[, 3])`` with one geometry per frame."""
    meta = {**_meta(ds), **extra_meta}
    first = geometries[0]
    if len(geometries) > 1 and all(g.has_plane for g in geometries):
        order, step = _stack_positions(geometries, names, path)
        values = values[order]
        origin = geometries[int(order[0])].position
        affine, (row_sp, col_sp) = _affine(first, step, origin)
        meta["geometry"] = "sorted along the slice normal"
    else:
        affine, (row_sp, col_sp) = _affine(first, None, first.position)
        if len(geometries) > 1:
            meta["geometry"] = "frames in stored order (no per-frame positions)"
        else:
            meta["geometry"] = "patient" if first.has_plane else "pixel spacing only"
    if first.pixel_spacing is None:
        meta["pixel_spacing"] = "absent (1 mm assumed)"
    elif first.spacing_source != "PixelSpacing":
        meta["pixel_spacing"] = f"from {first.spacing_source} (at the detector)"
    array = np.moveaxis(values, -1, 0) if colour else values[None]
    if len(geometries) == 1:
        array = array[:, 0]
        spacing: tuple[float, ...] = (row_sp, col_sp)
        affine = affine[:, [1, 2, 0, 3]]  # 2D index (row, col) -> third column is the normal
    else:
        spacing = (float(np.linalg.norm(affine[:3, 0])), row_sp, col_sp)
    return Image(
        array=array,
        spacing=spacing,
        affine=affine,
        modality=str(ds.get("Modality", "")),
        source_dtype=extra_meta.get("stored_dtype", "float32"),
        meta=meta,
        fingerprint=fingerprint,
        path=str(path),
    )


def read_dicom_file(path: str | Path) -> Image:
    """Read one DICOM file: a single image or a multi-frame object.

    >>> img = read_dicom_file(DATA / "pydicom_samples" / "CT_small.dcm")  # doctest: +SKIP
    >>> img.modality, img.spatial_shape                                    # doctest: +SKIP
    ('CT', (128, 128))
    """
    path = Path(path)
    with _damaged_dicom(path):
        return _read_dicom_file(path)


def _read_dicom_file(path: Path) -> Image:
    ds = _dcmread(path)
    _refuse_non_image(ds, path)
    stored = _pixels(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    colour = photometric in _COLOUR or photometric == "PALETTE COLOR"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    expected_ndim = 2 + (frames > 1) + colour
    if stored.ndim != expected_ndim:
        raise ReadError(
            path,
            f"pixel array has shape {stored.shape}, expected {expected_ndim} axes for "
            f"{frames} frame(s), {photometric}",
        )
    values = _rescaled(ds, stored, frames, path)
    if frames == 1:
        values = values[None]
    geometries = [_FrameGeometry(ds, i if frames > 1 else None) for i in range(frames)]
    names = [f"frame {i + 1}" for i in range(frames)]
    extra = {"stored_dtype": str(stored.dtype), "frames": frames}
    if photometric == "MONOCHROME1":
        extra["photometric_note"] = "MONOCHROME1 inverted to MONOCHROME2"
    return _image_from_frames(values, colour, geometries, names, ds, path, sha256_file(path), extra)


def list_dicom_series(folder: str | Path) -> dict[str, list[Path]]:
    """Group the DICOM image files of a folder (not recursive) by Series Instance UID."""
    return _scan_folder(Path(folder))[0]


def _scan_folder(folder: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """(image files by series, non-image DICOM objects skipped)."""
    series: dict[str, list[Path]] = defaultdict(list)
    skipped: list[Path] = []
    for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if not is_dicom_file(file) and file.suffix.lower() not in (".dcm", ".dicom"):
            continue
        with _damaged_dicom(file):
            ds = _dcmread(file, stop_before_pixels=True)
            if _non_image_reason(ds) is not None:
                log.debug("skipping non-image DICOM object %s", file)
                skipped.append(file)
                continue
            series[str(ds.get("SeriesInstanceUID", "unknown"))].append(file)
    return dict(series), skipped


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> Image:
    """Read a folder of single-frame DICOM slices as one volume, sorted along the slice normal.

    Args:
        folder: the folder (not searched recursively).
        series_uid: which series to read when the folder holds several.
    """
    folder = Path(folder)
    series, skipped = _scan_folder(folder)
    if not series and skipped:
        names = ", ".join(p.name for p in skipped[:3])
        raise NonImageObjectError(
            folder,
            f"the folder holds only DICOM objects that are not images ({names})",
            "give the folder of the image series they refer to",
        )
    if not series:
        raise ReadError(folder, "no DICOM image files in this folder", "check the path")
    if series_uid is None:
        if len(series) > 1:
            listing = "; ".join(f"{uid} ({len(files)} files)" for uid, files in series.items())
            raise SeriesError(
                folder,
                f"the folder holds {len(series)} series: {listing}",
                "choose one with series_uid= (CLI: --series UID)",
            )
        series_uid = next(iter(series))
    if series_uid not in series:
        raise SeriesError(folder, f"no series {series_uid}; found {sorted(series)}")
    return read_dicom_slices(series[series_uid], folder)


def read_dicom_slices(files: Sequence[Path], name: str | Path) -> Image:
    """Read single-frame DICOM files of one series as a volume (``name`` labels errors)."""
    folder = Path(name)
    with _damaged_dicom(folder):
        return _read_dicom_slices(files, folder)


def _read_dicom_slices(files: Sequence[Path], folder: Path) -> Image:
    if len(files) == 1:
        return read_dicom_file(files[0])
    datasets, slices = [], []
    for file in files:
        ds = _dcmread(file)
        _refuse_non_image(ds, file)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise SeriesError(
                file, "a multi-frame object inside a series folder", "read it on its own"
            )
        stored = _pixels(ds, file)
        datasets.append(ds)
        slices.append((stored, _rescaled(ds, stored, 1, file)))
    shapes = {values.shape for _, values in slices}
    if len(shapes) > 1:
        by_shape = {values.shape: f.name for f, (_, values) in zip(files, slices, strict=True)}
        raise SeriesError(
            folder, f"slices have different sizes: {by_shape}", "the series is inconsistent"
        )
    geometries = [_FrameGeometry(ds, None) for ds in datasets]
    if not all(g.has_plane for g in geometries):
        missing = [f.name for f, g in zip(files, geometries, strict=True) if not g.has_plane]
        raise SeriesError(
            folder,
            f"{len(missing)} slice(s) lack Image Position/Orientation (e.g. {missing[0]})",
            "the slices cannot be ordered; read them as separate images",
        )
    spacings = {
        tuple(np.round(g.pixel_spacing, 5)) for g in geometries if g.pixel_spacing is not None
    }
    if len(spacings) > 1:
        raise SeriesError(folder, f"slices have different Pixel Spacing: {sorted(spacings)}")
    values = np.stack([v for _, v in slices])
    photometric = str(datasets[0].get("PhotometricInterpretation", "MONOCHROME2"))
    colour = photometric in _COLOUR or photometric == "PALETTE COLOR"
    fingerprint = combine_fingerprints((f.name, sha256_file(f)) for f in files)
    extra = {
        "stored_dtype": str(slices[0][0].dtype),
        "files": len(files),
        "series_folder": True,
    }
    return _image_from_frames(
        values, colour, geometries, [f.name for f in files], datasets[0], folder, fingerprint, extra
    )
