"""Provenance of generated sets: only images that medisynth generated are exported as synthetic.

``medisynth generate`` records, in the set's ``generation.json``, the model id and the sha256 of
every file it wrote (key ``"sha256"``: name relative to the set folder -> hex digest).
:func:`export_generated` exports a set folder, a subfolder or one file of it as DICOM flagged
Synthetic Data = YES, after checking each file's bytes against that record. Everything else is
refused, with the reason: a file outside any generated set (a real NIfTI, PNG or DICOM file or
series), a file of a set that its record does not list, a file whose bytes changed after
generation. Real images are never relabelled as synthetic, whatever options are given.

The record guards against mistakes (the wrong path, a scan copied into a set folder, a file
replaced or edited after generation); it is not a signature: someone who writes a record by hand
can make anything pass, as they could write DICOM by hand.

"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medisynth.data.image import Image
from medisynth.export.dicom import (
    ExportError,
    check_output_folder,
    export_dicom_images,
    export_dicom_series,
)
from medisynth.files import file_sha256
from medisynth.output_set import DIGESTS, RECORD, check_complete

_NOT_GENERATED = (
    "medisynth exports only images that it generated (listed, with their checksums, in a "
    "set's generation.json); real images are never relabelled as synthetic. Generate a set "
    "with `medisynth generate MODEL -o SET` and export SET"
)


class ProvenanceError(ExportError):
    """The images are not verified output of ``medisynth generate``; nothing is exported."""


@dataclass(frozen=True)
class GeneratedFiles:
    """Files of a generated set whose bytes match its record.

    Attributes:
        root: the set folder (it holds ``generation.json``).
        record: the parsed record.
        files: the selected image files, names relative to ``root``, in the record's order.
        model_id: the model that generated them.
        modality: the model's modality (upper case), ``""`` when it records none.
    """

    root: Path
    record: dict[str, Any]
    files: list[str]
    model_id: str
    modality: str

    def labels(self) -> dict[str, int]:
        """Class label per file from the set's labels file, when it is verified too."""
        name = self.record.get("labels_file")
        if not name or not _matches(self.root, name, self.record.get(DIGESTS, {})):
            return {}
        with open(self.root / name, newline="", encoding="utf-8") as handle:
            return {row["file"]: int(row["label"]) for row in csv.DictReader(handle)}


def find_set(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` that holds a generation record."""
    start = path if path.is_dir() else path.parent
    for folder in (start, *start.parents):
        if (folder / RECORD).is_file():
            return folder
    return None


def _matches(root: Path, name: str, digests: dict[str, str]) -> bool:
    path = root / name
    return name in digests and path.is_file() and file_sha256(path) == digests[name]


def _image_files(record: dict[str, Any]) -> list[str]:
    """The synthetic images a record lists (a mask -> image set's label maps are not images)."""
    files = [str(name) for name in record.get("files", [])]
    if "mask_labels" in record:
        files = [name for name in files if not name.startswith("masks/")]
    return files


def verified_files(source: str | os.PathLike[str]) -> GeneratedFiles:
    """The generated images at ``source`` (a set folder, a subfolder or one file of a set),
    each checked against the set's record.

    Raises:
        ProvenanceError: ``source`` is not in a generated set, its record is not medisynth's or
            has no checksums, or a file is not listed there or differs from what was generated.
    """
    source = Path(source)
    if not source.exists():
        raise ProvenanceError(f"{source}: no such file or folder")
    root = find_set(source.resolve())
    if root is None:
        raise ProvenanceError(
            f"{source}: not part of a set that medisynth generated (no {RECORD} in its folder "
            f"or above). {_NOT_GENERATED}"
        )
    check_complete(root)
    try:
        record = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProvenanceError(f"{root / RECORD}: not a readable generation record ({err})") from err
    if not isinstance(record, dict) or record.get("synthetic") is not True:
        raise ProvenanceError(
            f"{root / RECORD}: not a medisynth generation record. {_NOT_GENERATED}"
        )
    digests = record.get(DIGESTS)
    model_id = record.get("model_id")
    if not isinstance(digests, dict) or not isinstance(model_id, str) or not model_id:
        raise ProvenanceError(
            f"{root / RECORD}: the record has no file checksums or model id (written by an "
            "older medisynth), so the images cannot be verified; generate the set again"
        )
    target = source.resolve()
    chosen = [
        name
        for name in _image_files(record)
        if (root / name).resolve() == target or target in (root / name).resolve().parents
    ]
    if not chosen:
        raise ProvenanceError(
            f"{source}: not an image that medisynth generated in {root} (its {RECORD} does not "
            f"list it). {_NOT_GENERATED}"
        )
    for name in chosen:
        path = (root / name).resolve()
        if root.resolve() not in path.parents:
            raise ProvenanceError(f"{root / RECORD}: lists {name!r}, outside the set folder")
        if not path.is_file():
            raise ProvenanceError(f"{root / name}: listed in {RECORD} but missing")
        if name not in digests or file_sha256(path) != digests[name]:
            raise ProvenanceError(
                f"{root / name}: its bytes differ from what medisynth generated (sha256 does not "
                f"match {RECORD}): it was changed or replaced after generation, so it is not "
                "exported as synthetic. Generate the set again"
            )
    intensity = record.get("intensity_map") or {}
    modality = str(record.get("modality") or intensity.get("modality") or "").upper()
    return GeneratedFiles(
        root=root,
        record=record,
        files=chosen,
        model_id=model_id,
        modality="" if modality == "UNKNOWN" else modality,
    )


def _png_decoder(record: dict[str, Any]) -> tuple[float, float]:
    """``(offset, scale)`` of the PNG storage a set records (stored = (value - offset) * scale)."""
    storage = record.get("storage") or {}
    return float(storage.get("offset", 0.0)), float(storage.get("scale", 1.0)) or 1.0


def _read_images(found: GeneratedFiles) -> tuple[list[Image], list[int] | None, list[str]]:
    """The selected images in source units, their labels (when known) and a name for each."""
    from medisynth.data.io import read_image, read_medmnist

    images: list[Image] = []
    labels: list[int] = []
    names: list[str] = []
    by_file = found.labels()
    offset, scale = _png_decoder(found.record)
    for name in found.files:
        path = found.root / name
        stem = Path(name).name.split(".")[0]
        if name.endswith(".npz"):
            arrays = read_medmnist(path)
            split = "train" if "train" in arrays.images else arrays.splits[0]
            values, classes = arrays.images[split], arrays.labels[split]
            for index, (array, label) in enumerate(zip(values, classes, strict=True), start=1):
                images.append(Image(array, spacing=(1.0,) * (array.ndim - 1)))
                labels.append(int(np.ravel(label)[0]))
                names.append(f"{stem}_{index:06d}")
            continue
        image = read_image(path)
        if name.lower().endswith(".png") and (offset, scale) != (0.0, 1.0):
            image.array = (image.array / scale + offset).astype(np.float32)
        images.append(image)
        if name in by_file:
            labels.append(by_file[name])
        names.append(stem)
    return images, (labels if len(labels) == len(images) else None), names


def export_generated(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    modality: str | None = None,
    model_id: str | None = None,
    description: str | None = None,
) -> list[Path]:
    """Export generated images as DICOM flagged synthetic (the API of ``medisynth export``).

    2D images become one Secondary Capture series in ``out`` (class labels in the Image
    Comments); each volume a CT or MR series (``out`` itself for one volume, else
    ``out/<file name>/``). The model id written into every object comes from the set's record.

    Args:
        source: a set folder written by ``medisynth generate``, a subfolder or a file of it.
        out: a new or empty folder.
        modality: ``CT`` or ``MR`` for volumes of a model that records no modality; when the
            model records one, it must be the same.
        model_id: when given, the set must have been generated by this model.
        description: the Series Description.

    Raises:
        ProvenanceError: the images are not verified medisynth output (see
            :func:`verified_files`).
        ExportError: the options contradict the record, or the folder ``out`` is not empty.
    """
    found = verified_files(source)
    record_path = found.root / RECORD
    if model_id is not None and model_id != found.model_id:
        raise ExportError(
            f"{source}: generated by model {found.model_id}, not {model_id} ({record_path})"
        )
    if found.record.get("format") == "dicom":
        raise ExportError(
            f"{source}: already DICOM flagged Synthetic Data = YES (generate --format dicom); "
            f"send it as it is: medisynth push {found.root / 'dicom'} --to ..."
        )
    chosen = (modality or "").upper()
    if chosen and found.modality and chosen != found.modality:
        raise ExportError(
            f"{source}: the model that generated these images records modality "
            f"{found.modality}; --modality {chosen} would mislabel them"
        )
    chosen = chosen or found.modality
    out = Path(out)
    check_output_folder(out)
    images, labels, names = _read_images(found)
    volumes = [image for image in images if image.ndim == 3]
    if not volumes:
        classes = found.record.get("class_names") or []
        return export_dicom_images(
            images,
            out,
            found.model_id,
            modality=chosen if chosen and chosen not in ("CT", "MR") else "OT",
            series_description=description or f"Synthetic {', '.join(classes)}".strip(),
            labels=labels,
        )
    if len(volumes) != len(images):
        raise ExportError(f"{source}: the set mixes 2D images and volumes; export them apart")
    if chosen not in ("CT", "MR"):
        raise ExportError(
            f"{source}: volumes are exported as CT or MR series, but "
            + (
                f"the model that generated them records modality {chosen}"
                if chosen
                else "the model records no modality: give --modality CT or MR"
            )
        )
    written: list[Path] = []
    for image, name in zip(images, names, strict=True):
        folder = out if len(images) == 1 else out / name
        written += export_dicom_series(
            image, folder, found.model_id, chosen, description or "Synthetic volume"
        )
    return written
