"""``medisynth info``: a description of any supported file or folder.

>>> import numpy as np, tempfile, pathlib
>>> from PIL import Image as PILImage
>>> path = pathlib.Path(tempfile.mkdtemp()) / "xray.png"
>>> PILImage.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000).save(path)
>>> d = describe(path)
>>> d.fields["shape"], d.fields["stored type"], d.fields["intensity range"]
([1, 3, 4], 'uint16', [0.0, 11000.0])
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medisynth.data.dicom import (
    KEPT_ATTRIBUTES,
    is_dicom_file,
    list_dicom_series,
    read_dicom_slices,
)
from medisynth.data.image import Image, finite_range
from medisynth.data.io import detect_format, read_image, read_image_folder, read_medmnist
from medisynth.errors import ReadError
from medisynth.output_set import COMPLETE, RECORD, OutputFolderError, read_record


@dataclass
class Description:
    """What ``medisynth info`` prints: a kind and ordered fields."""

    path: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    parts: list[Description] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, **self.fields}
        if self.parts:
            out["parts"] = [p.to_dict() for p in self.parts]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_jsonable)

    def to_text(self, indent: str = "") -> str:
        lines = [f"{indent}{self.path}  [{self.kind}]"]
        width = max((len(k) for k in self.fields), default=0)
        for key, value in self.fields.items():
            lines.append(f"{indent}  {key:<{width}}  {_format(value)}")
        for part in self.parts:
            lines.append(part.to_text(indent + "  "))
        return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, float) for v in value):
        return "(" + ", ".join(f"{v:.6g}" for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format(v)}" for k, v in value.items())
    return str(value)


def describe_image(image: Image) -> Description:
    """Shape, spacing, modality, stored type, range and geometry of one image."""
    kind = {2: "2D image", 3: "3D volume"}[image.ndim]
    fields: dict[str, Any] = {
        "format": image.meta.get("format", ""),
        "shape": list(image.array.shape),
        "axes": "C, " + ", ".join(["H", "W"] if image.ndim == 2 else ["D/i", "H/j", "W/k"]),
        "spacing (mm)": list(image.spacing),
        "modality": image.modality or "unknown (set it with --modality when it matters)",
        "stored type": image.source_dtype,
        "intensity range": list(image.intensity_range),
        "orientation": "".join(_axis_codes(image.affine)),
        "origin (mm, RAS)": [round(float(v), 3) for v in image.affine[:3, 3]],
        "fingerprint": image.fingerprint[:16],
    }
    for key in ("geometry", "photometric_note", "pixel_spacing", "files"):
        if key in image.meta:
            fields[key.replace("_", " ")] = image.meta[key]
    # DICOM: the technical attributes kept as metadata, nothing the Basic Profile removes
    for key in _SHOWN_ATTRIBUTES:
        if key in image.meta:
            fields[key] = image.meta[key]
    return Description(image.path, kind, fields)


#: the DICOM attributes ``info`` lists (the rest of KEPT_ATTRIBUTES is shown as shape, spacing...)
_SHOWN_ATTRIBUTES = tuple(
    key
    for key in KEPT_ATTRIBUTES
    if key not in ("Modality", "Rows", "Columns", "PixelSpacing", "PixelRepresentation")
)


def _axis_codes(affine: np.ndarray) -> list[str]:
    import nibabel as nib

    return list(nib.aff2axcodes(affine))


def describe(path: str | Path, series_uid: str | None = None) -> Description:
    """Describe a file or folder that medisynth can read.

    Files: one image (shape, spacing, modality, stored type, intensity range, orientation) or a
    MedMNIST npz (splits, shapes, label counts). Folders: a set ``medisynth generate`` wrote
    (see :func:`describe_generated_set`), a DICOM series (the volume), several series (one line
    each), or an image folder (count, shape, class counts, unreadable files).
    ``series_uid`` picks one series of a folder that holds several.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "no such file or folder", "check the path")
    if not path.is_file() and not path.is_dir():  # never open a pipe: it would wait forever
        raise ReadError(path, "not a regular file (a pipe, socket or device)")
    if series_uid is not None:
        return describe_image(read_image(path, series_uid=series_uid))
    if path.is_dir() and (path / RECORD).is_file():
        try:
            record = read_record(path)
        except OutputFolderError:
            record = None  # someone else's generation.json: describe the folder as it is
        if record is not None:
            return describe_generated_set(path, record)
    if path.is_file():
        if detect_format(path) == "npz":
            return _describe_medmnist(path)
        return describe_image(read_image(path))
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not files and not any(p.is_dir() for p in path.iterdir()):
        raise ReadError(path, "the folder is empty", "point to a folder with images")
    if any(is_dicom_file(p) for p in files):
        series = list_dicom_series(path)
        if len(series) == 1:
            return describe_image(read_image(path))
        parts = []
        for uid, members in series.items():
            try:
                parts.append(describe_image(read_dicom_slices(members, path)))
            except ReadError as err:
                parts.append(Description(uid, "unreadable series", {"error": str(err)}))
        return Description(str(path), f"folder of {len(series)} DICOM series", {}, parts)
    folder = read_image_folder(path, skip_bad=True)
    fields: dict[str, Any] = {
        "images": len(folder.files),
        "shape": list(folder.images.shape[1:]),
        "stored type": folder.source_dtype,
        "intensity range": list(finite_range(folder.images)),
        "classes": folder.class_counts(),
        "fingerprint": folder.fingerprint[:16],
    }
    if folder.skipped:
        fields["skipped"] = len(folder.skipped)
        fields["skipped files"] = "; ".join(f"{f.name}: {why}" for f, why in folder.skipped[:5])
    return Description(str(path), "image folder", fields)


def describe_generated_set(path: Path, record: dict[str, Any]) -> Description:
    """A folder ``medisynth generate`` wrote, from its ``generation.json``: complete or not,
    format, count, classes, model, seed; and its first image."""
    listed = list(record["files"]) + ([record["labels_file"]] if record["labels_file"] else [])
    present = sum((path / name).is_file() for name in listed)
    complete = record["status"] == COMPLETE
    fields: dict[str, Any] = {
        "status": "complete"
        if complete
        else "INCOMPLETE: `medisynth generate` was interrupted; generate it again with "
        "--overwrite (validate and push refuse it)",
    }
    if complete:
        for key, label in [
            ("format", "format"),
            ("count", "images"),
            ("class_counts", "classes"),
            ("mask_labels", "mask labels"),
            ("size", "size"),
            ("seed", "seed"),
            ("created", "created"),
        ]:
            if record.get(key) is not None:
                fields[label] = record[key]
        model = record.get("model_id")
        if isinstance(model, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", model):
            fields["model"] = model  # (earlier records held the package's path: not shown)
    fields["files present"] = f"{present} of {len(listed)} listed"
    parts = []
    first = next((path / name for name in record["files"] if (path / name).is_file()), None)
    if complete and first is not None:
        try:
            parts.append(describe(first))
        except ReadError as err:
            parts.append(Description(first.name, "unreadable file", {"error": str(err)}))
    return Description(str(path), "medisynth synthetic set", fields, parts)


def _describe_medmnist(path: Path) -> Description:
    data = read_medmnist(path)
    parts = []
    for split in data.splits:
        images = data.images[split]
        parts.append(
            Description(
                split,
                "split",
                {
                    "images": int(images.shape[0]),
                    "shape": list(images.shape[1:]),
                    "intensity range": list(finite_range(images)),
                    "label counts": data.class_counts(split),
                },
            )
        )
    fields = {"stored type": data.source_dtype, "fingerprint": data.fingerprint[:16]}
    return Description(str(path), "MedMNIST collection", fields, parts)
