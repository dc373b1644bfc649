"""The records a read returns: :class:`Image` for one image or volume, :class:`LabeledArrays` for a
MedMNIST-style collection of same-sized images with labels.

Array convention: channel-first, ``(C, *spatial)``, float32, intensities as stored in the source
after the modality's rescale (HU for CT); nothing is squeezed to uint8. ``affine`` maps the voxel
index along the spatial axes (padded with 0 to three axes for 2D images) to RAS+ world
coordinates in millimetres, the NIfTI/nibabel convention.

>>> import numpy as np
>>> img = Image(np.zeros((1, 4, 5), np.float32), spacing=(0.5, 0.5))
>>> img.spatial_shape, img.ndim, img.channels
((4, 5), 2, 1)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def _default_affine(spacing: tuple[float, ...]) -> np.ndarray:
    affine = np.eye(4)
    for axis, step in enumerate(spacing[:3]):
        affine[axis, axis] = step
    return affine


@dataclass
class Image:
    """One 2D image or 3D volume with its geometry and provenance.

    Attributes:
        array: float32, shape ``(C, H, W)`` or ``(C, D, H, W)``.
        spacing: the voxel size in mm along each spatial axis (same order as the array).
        affine: 4x4 voxel-index to RAS+ mm matrix (see the module docstring).
        modality: DICOM modality code (``"CT"``, ``"MR"``, ``"CR"``, ...) or ``""`` when unknown.
        source_dtype: the stored type before conversion to float32, e.g. ``"uint16"``.
        meta: source metadata (never patient identifiers), JSON-serialisable.
        fingerprint: sha256 of the source bytes (of all files, for a series).
        path: where it was read from.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    modality: str = ""
    source_dtype: str = "float32"
    meta: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array, dtype=np.float32)
        if self.array.ndim not in (3, 4):
            raise ValueError(
                f"Image.array must be (C, H, W) or (C, D, H, W), got {self.array.shape}"
            )
        self.spacing = tuple(float(s) for s in self.spacing)
        if len(self.spacing) != self.ndim:
            raise ValueError(f"spacing {self.spacing} does not match {self.ndim} spatial axes")
        if self.affine is None or np.shape(self.affine) != (4, 4):
            self.affine = _default_affine(self.spacing)
        self.affine = np.asarray(self.affine, dtype=np.float64)

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return int(self.array.ndim - 1)

    @property
    def channels(self) -> int:
        return int(self.array.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def intensity_range(self) -> tuple[float, float]:
        return finite_range(self.array)

    def world_coordinates(self, index: Iterable[float]) -> np.ndarray:
        """RAS+ mm position of a voxel index along the spatial axes."""
        ijk = list(index) + [0.0] * (3 - self.ndim)
        return (self.affine @ np.array([*ijk, 1.0]))[:3]


@dataclass
class LabeledArrays:
    """A MedMNIST-style collection: per split, same-sized images and their labels.

    Attributes:
        images: split name -> float32 array ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        labels: split name -> int64 array ``(N,)`` (single label) or ``(N, K)`` (multi-label).
        source_dtype: stored type of the images, e.g. ``"uint8"``.
        fingerprint: sha256 of the source file.
        path: where it was read from.
    """

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    source_dtype: str = "uint8"
    fingerprint: str = ""
    path: str = ""
    modality: str = ""

    @property
    def splits(self) -> list[str]:
        return list(self.images)

    def class_counts(self, split: str) -> dict[int, int]:
        labels = self.labels[split]
        if labels.ndim != 1:
            return {k: int(v) for k, v in enumerate(labels.sum(axis=0))}
        values, counts = np.unique(labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def finite_range(array: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values; NaNs when there are none.

    >>> finite_range(np.array([np.nan, 2.0, -1.0]))
    (-1.0, 2.0)
    """
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    return (float(finite.min()), float(finite.max()))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def combine_fingerprints(parts: Iterable[tuple[str, str]]) -> str:
    """One fingerprint for several files: sha256 over sorted (name, file fingerprint) pairs."""
    digest = hashlib.sha256()
    for name, value in sorted(parts):
        digest.update(f"{name}\0{value}\n".encode())
    return digest.hexdigest()


def images_fingerprint(**sides: Iterable[Image]) -> str:
    """One fingerprint for named lists of images (e.g. ``source=``, ``target=``): the
    :func:`combine_fingerprints` of ``("<side><index>", image fingerprint)``.

    >>> a = Image(np.zeros((1, 2, 2), np.float32), (1, 1), fingerprint="a")
    >>> images_fingerprint(image=[a], mask=[a]) == images_fingerprint(mask=[a], image=[a])
    True
    """
    return combine_fingerprints(
        (f"{side}{index}", image.fingerprint)
        for side, images in sides.items()
        for index, image in enumerate(images)
    )
