"""DICOM export of synthetic images, flagged so that nobody can take them for a patient's.

Every object carries Synthetic Data (0008,001C) = YES, Image Type DERIVED\\SECONDARY, Burned In
Annotation NO, new Study/Series/SOP Instance UIDs, a generated patient name and ID that say
SYNTHETIC, Manufacturer and Software Versions naming medisynth, and a Derivation Description naming
the model. Nothing is copied from any source file: the objects are built from scratch.

These writers write whatever pixels they are given: they serve images generated in memory
(``medisynth generate --format dicom``). Files are exported through
:func:`medisynth.export.provenance.export_generated` (``medisynth export``), which first checks
that medisynth generated them.

* Volumes (CT or MR) become a series of CT/MR Image Storage objects reoriented to the standard
  axial layout (rows posterior, columns patient-left, slices ascending superior) with one
  Frame of Reference, consistent Image Position/Orientation, Pixel Spacing and Slice Thickness.
* 2D images become Secondary Capture objects (grey 8/16-bit or RGB), one series per call.

Intensities: CT is stored as signed 16-bit HU (Rescale Slope 1, Intercept 0, rounded to 1 HU);
MR as 16-bit, signed when there are negative values; other grey images as 16-bit, signed when
there are negative values (8-bit when the values are integers in 0..255), rounded to integers
and clipped to the type's range. Secondary Capture images with non-integer values and
a range under 4096 are first stretched linearly onto 0..4095 and the stretch is written to
Rescale Slope/Intercept, so the reader restores them to within 1/4095 of their range. MR series
have no rescale in their IOD: their values are rounded to integers.

>>> import numpy as np, tempfile, pathlib
>>> from medisynth.data.image import Image
>>> from medisynth.data.io import read_image
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> vol = Image(np.full((1, 4, 5, 3), -1000.0), spacing=(1, 1, 2), affine=np.diag([1, 1, 2, 1.0]),
...             modality="CT")
>>> files = export_dicom(vol, out / "series", model_id="demo-gan")
>>> len(files), float(read_image(out / "series").array.min())
(3, -1000.0)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medisynth.data.image import Image
from medisynth.errors import MedisynthError
from medisynth.files import atomic_path

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

#: The DICOM modalities a volume can be exported as (their own image IODs).
VOLUME_MODALITIES = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE}


class ExportError(MedisynthError):
    """The images cannot be exported as asked (wrong shape, modality, or an occupied folder)."""


@dataclass(frozen=True)
class SyntheticIdentity:
    """The generated, clearly synthetic identity written into every exported object."""

    model_id: str
    patient_name: str
    patient_id: str

    @classmethod
    def for_model(cls, model_id: str) -> SyntheticIdentity:
        """``SYNTHETIC^<model>`` and ``SYN-<hash>``: stable per model, never a real person's."""
        if not model_id or not model_id.strip():
            raise ExportError("a model id is required: exported DICOM must name its model")
        digest = hashlib.sha256(model_id.encode()).hexdigest()[:10].upper()
        name = "SYNTHETIC^" + "".join(c if c.isalnum() else "_" for c in model_id)[:40]
        return cls(model_id=model_id, patient_name=name, patient_id=f"SYN-{digest}")


def _version() -> str:
    from medisynth import __version__

    return __version__


def _new_uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid())


def _ds_text(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{value:.10g}"
    if len(text) > 16:
        text = f"{value:.6e}"
    return text


def check_output_folder(folder: Path) -> None:
    """ExportError unless ``folder`` is new or an empty folder (existing files are never
    overwritten)."""
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder}: exists and is not a folder; give a new or empty folder")
    if folder.exists() and any(folder.iterdir()):
        raise ExportError(
            f"{folder}: the output folder is not empty; choose a new folder (existing files are "
            "never overwritten)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(
            f"{folder}: cannot create the output folder ({err.strerror or err}); give a folder "
            "you can write to"
        ) from err


def _base_dataset(
    identity: SyntheticIdentity,
    sop_class: str,
    modality: str,
    study_uid: str,
    series_uid: str,
    series_description: str,
    now: _dt.datetime,
) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    meta: Any = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    meta.ImplementationVersionName = f"MEDISYNTH_{_version()}"[:16]
    ds.file_meta = meta
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # patient: generated, clearly synthetic
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic image; no patient data"
    # study / series
    ds.StudyInstanceUID = study_uid
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "SYNTH"
    ds.AccessionNumber = ""
    ds.StudyDescription = "Synthetic images (medisynth)"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.Modality = modality
    ds.Laterality = ""
    ds.SeriesDescription = series_description[:64]
    ds.ContentDate, ds.ContentTime = date, time
    # equipment and provenance
    ds.Manufacturer = "medisynth"
    ds.ManufacturerModelName = identity.model_id[:64]
    ds.SoftwareVersions = f"medisynth {_version()}"
    ds.DerivationDescription = (
        f"Synthetic image generated by medisynth model {identity.model_id}"
    )[:1024]
    ds.SyntheticData = "YES"
    ds.BurnedInAnnotation = "NO"
    ds.ContentQualification = "RESEARCH"
    return ds


@dataclass(frozen=True)
class _Storage:
    """How float values become stored integers: stored = round((value - intercept) / slope)."""

    dtype: str
    slope: float
    intercept: float

    def encode(self, values: np.ndarray) -> np.ndarray:
        info = np.iinfo(np.dtype(self.dtype))
        stored = np.rint((values.astype(np.float64) - self.intercept) / self.slope)
        return np.clip(stored, info.min, info.max).astype(self.dtype)


def _storage_for(values: np.ndarray, modality: str, allow_rescale: bool) -> _Storage:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ExportError("the image holds no finite values")
    low, high = float(finite.min()), float(finite.max())
    integers = bool(np.allclose(finite, np.round(finite)))
    if modality == "CT" or (modality == "MR" and low < 0):
        return _Storage("int16", 1.0, 0.0)
    if modality == "MR":  # the MR IOD stores 16 bits
        return _Storage("uint16", 1.0, 0.0)
    if not integers and allow_rescale and (high - low) < 4096:
        slope = (high - low) / 4095 if high > low else 1.0
        return _Storage("uint16", slope, low)
    if integers and low >= 0 and high <= 255:
        return _Storage("uint8", 1.0, 0.0)
    return _Storage("uint16" if low >= 0 else "int16", 1.0, 0.0)


def _set_pixels(ds: Any, stored: np.ndarray, storage: _Storage, colour: bool) -> None:
    bits = np.dtype(storage.dtype).itemsize * 8
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if np.dtype(storage.dtype).kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    if not colour:
        values = stored.astype(np.float64) * storage.slope + storage.intercept
        low, high = np.percentile(values, [1, 99])
        ds.WindowCenter = _ds_text((low + high) / 2)
        ds.WindowWidth = _ds_text(max(high - low, 1.0))


def _write(ds: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def _to_lps_axial(image: Image) -> tuple[np.ndarray, np.ndarray]:
    """Reorient a volume to array axes (S, P, L) -- slices ascending superior, rows posterior,
    columns toward the patient's left -- and return it with its RAS affine."""
    import nibabel.orientations as nio

    current = nio.io_orientation(image.affine)
    target = nio.axcodes2ornt(("L", "P", "S"))
    transform = nio.ornt_transform(current, target)
    spatial = image.array.transpose(1, 2, 3, 0)  # (i, j, k, C)
    reoriented = nio.apply_orientation(spatial, transform)
    affine_lps_order = image.affine @ nio.inv_ornt_aff(transform, spatial.shape[:3])
    array = np.transpose(reoriented, (3, 2, 1, 0))  # (C, S, P, L)
    return array, affine_lps_order[:, [2, 1, 0, 3]]


def export_dicom_series(
    image: Image,
    folder: str | os.PathLike[str],
    model_id: str,
    modality: str | None = None,
    series_description: str = "Synthetic volume",
) -> list[Path]:
    """Write a 3D volume as a CT or MR series, one file per axial slice.

    Args:
        image: a one-channel volume in its source units (HU for CT).
        folder: an empty or new folder.
        model_id: the model that generated the volume (written to every object).
        modality: ``"CT"`` or ``"MR"``; defaults to the image's own modality.
    """
    folder = Path(folder)
    modality = (modality or image.modality).upper()
    if modality not in VOLUME_MODALITIES:
        raise ExportError(
            f"volume export writes CT or MR series; the modality is {modality or 'unknown'!r}. "
            "Give modality='CT' or 'MR'"
        )
    if image.ndim != 3 or image.channels != 1:
        raise ExportError(f"need a one-channel 3D volume, got array shape {image.array.shape}")
    identity = SyntheticIdentity.for_model(model_id)
    array, affine = _to_lps_axial(image)
    volume = array[0]
    storage = _storage_for(volume, modality, allow_rescale=modality == "CT")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    slice_step, row_step, col_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    row_spacing, col_spacing = float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))
    thickness = float(np.linalg.norm(slice_step))
    orientation = [*(col_step / col_spacing), *(row_step / row_spacing)]
    study_uid, series_uid, frame_uid = _new_uid(), _new_uid(), _new_uid()
    now = _dt.datetime.now()
    check_output_folder(folder)
    written = []
    for k in range(volume.shape[0]):
        ds = _base_dataset(
            identity, VOLUME_MODALITIES[modality], modality, study_uid, series_uid,
            series_description, now,
        )  # fmt: skip
        sop_uid = _new_uid()
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = ""
        position = lps[:3, 3] + k * slice_step
        ds.ImagePositionPatient = [_ds_text(v) for v in position]
        ds.ImageOrientationPatient = [_ds_text(v) for v in orientation]
        ds.PixelSpacing = [_ds_text(row_spacing), _ds_text(col_spacing)]
        ds.SliceThickness = _ds_text(thickness)
        ds.SpacingBetweenSlices = _ds_text(thickness)
        ds.SliceLocation = _ds_text(float(position @ np.cross(orientation[:3], orientation[3:])))
        ds.AcquisitionNumber = ""
        if modality == "CT":
            ds.KVP = ""
            ds.RescaleIntercept = _ds_text(storage.intercept)
            ds.RescaleSlope = _ds_text(storage.slope)
            ds.RescaleType = "HU"
        else:
            ds.ScanningSequence = "RM"  # research mode: no acquisition took place
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.RepetitionTime = ""
            ds.EchoTime = ""
            ds.EchoTrainLength = ""
        _set_pixels(ds, storage.encode(volume[k]), storage, colour=False)
        written.append(_write(ds, folder / f"IM{k + 1:05d}.dcm"))
    return written


def export_dicom_images(
    images: Sequence[Image] | np.ndarray,
    folder: str | os.PathLike[str],
    model_id: str,
    modality: str = "OT",
    series_description: str = "Synthetic images",
    labels: Sequence[int] | None = None,
) -> list[Path]:
    """Write 2D images as one series of Secondary Capture objects.

    Args:
        images: :class:`Image` objects or an array ``(N, C, H, W)`` in source units; C is 1
            (grey) or 3 (RGB, values 0..255).
        folder: an empty or new folder.
        model_id: the model that generated them.
        modality: the modality code to record (``"OT"``, ``"CR"``, ``"US"``, ...).
        labels: optional class label per image, written to the Image Comments.
    """
    folder = Path(folder)
    items = (
        [(np.asarray(a, np.float32), (1.0, 1.0)) for a in images]
        if isinstance(images, np.ndarray)
        else [(img.array, img.spacing) for img in images]
    )
    if not items:
        raise ExportError("no images to export")
    identity = SyntheticIdentity.for_model(model_id)
    study_uid, series_uid = _new_uid(), _new_uid()
    now = _dt.datetime.now()
    check_output_folder(folder)
    written = []
    for index, (array, spacing) in enumerate(items):
        if array.ndim != 3 or array.shape[0] not in (1, 3):
            raise ExportError(f"image {index}: need (1|3, H, W), got {array.shape}")
        colour = array.shape[0] == 3
        ds = _base_dataset(
            identity, SECONDARY_CAPTURE_STORAGE, modality.upper(), study_uid, series_uid,
            series_description, now,
        )  # fmt: skip
        sop_uid = _new_uid()
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ConversionType = "SYN"
        ds.InstanceNumber = index + 1
        ds.PatientOrientation = ""
        if len(spacing) == 2 and tuple(spacing) != (1.0, 1.0):
            ds.PixelSpacing = [_ds_text(spacing[0]), _ds_text(spacing[1])]
        if labels is not None:
            ds.ImageComments = f"class label {int(labels[index])}"
        if colour:
            storage = _Storage("uint8", 1.0, 0.0)
            stored = storage.encode(np.moveaxis(array, 0, -1))
        else:
            storage = _storage_for(array[0], "", allow_rescale=True)  # SC rules, any modality
            stored = storage.encode(array[0])
            if (storage.slope, storage.intercept) != (1.0, 0.0):
                ds.RescaleIntercept = _ds_text(storage.intercept)
                ds.RescaleSlope = _ds_text(storage.slope)
                ds.RescaleType = "US"
        _set_pixels(ds, stored, storage, colour)
        written.append(_write(ds, folder / f"IM{index + 1:05d}.dcm"))
    return written


def export_dicom(
    image: Image,
    folder: str | os.PathLike[str],
    model_id: str,
    modality: str | None = None,
    series_description: str | None = None,
) -> list[Path]:
    """Export one image: a volume as a CT/MR series, a 2D image as Secondary Capture."""
    if image.ndim == 3:
        return export_dicom_series(
            image, folder, model_id, modality, series_description or "Synthetic volume"
        )
    return export_dicom_images(
        [image],
        folder,
        model_id,
        (modality or image.modality or "OT"),
        series_description or "Synthetic image",
    )
