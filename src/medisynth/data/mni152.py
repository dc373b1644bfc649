"""The MNI152 T1 template as training data: axial, coronal and sagittal slices, the view being
the class (``data.format: mni152_views``; the offline demo's data, no file or download needed).

The template (ICBM 2009a) ships inside the nilearn wheel; nilearn itself is not imported.
Slices are padded to a square field of view and resampled to ``size`` pixels.

>>> views = mni152_views(32)
>>> views.images.shape[1:], views.class_names
((1, 32, 32), ['axial', 'coronal', 'sagittal'])
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medisynth.data.image import sha256_file
from medisynth.data.resize import resize_images
from medisynth.errors import ReadError

MNI152_T1 = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
VIEW_NAMES = ["axial", "coronal", "sagittal"]
#: RAS axis held fixed for each view (axial: S, coronal: A, sagittal: R)
VIEW_AXES = {"axial": 2, "coronal": 1, "sagittal": 0}


def mni152_t1_path() -> Path:
    """The MNI152 T1 template inside the installed nilearn wheel (nilearn is not imported)."""
    spec = importlib.util.find_spec("nilearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / MNI152_T1
        if path.is_file():
            return path
    raise ReadError(
        "nilearn/" + MNI152_T1,
        "the MNI152 template is not available",
        "install medisynth's dependencies (pip install -e .), which include nilearn",
    )


@dataclass
class ViewSlices:
    """Slices of the template: images ``(N, 1, S, S)`` in stored units (0..255), view labels."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    spacing: tuple[float, float]
    fingerprint: str
    source: str


def mni152_views(size: int = 64, min_brain_fraction: float = 0.5) -> ViewSlices:
    """Axial, coronal and sagittal slices through the brain, resampled to ``size`` pixels.

    A slice is kept when its brain area is at least ``min_brain_fraction`` of the largest slice
    of its view. Orientation: superior (axial: anterior) at the top.
    """
    import nibabel as nib

    path = mni152_t1_path()
    volume = nib.as_closest_canonical(nib.load(path))
    data = np.asarray(volume.dataobj, dtype=np.float32)
    # crop to the head's bounding box (plus a margin) so the pixels go to anatomy, not air
    inside = np.nonzero(data > 40)
    low = [max(int(i.min()) - 4, 0) for i in inside]
    high = [min(int(i.max()) + 5, n) for i, n in zip(inside, data.shape, strict=True)]
    data = data[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    field = max(data.shape)  # a common square field of view keeps the 1 mm scale in all views
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(VIEW_NAMES):
        stack = np.moveaxis(data, VIEW_AXES[name], 0)
        area = (stack > 40).mean(axis=(1, 2))
        keep = np.nonzero(area >= min_brain_fraction * area.max())[0]
        for index in keep:
            slice_2d = np.rot90(stack[index])
            pad_rows, pad_cols = field - slice_2d.shape[0], field - slice_2d.shape[1]
            square = np.pad(
                slice_2d,
                (
                    (pad_rows // 2, pad_rows - pad_rows // 2),
                    (pad_cols // 2, pad_cols - pad_cols // 2),
                ),
            )
            images.append(square)
            labels.append(label)
    stacked = np.stack(images)[:, None].astype(np.float32)
    resized = np.clip(resize_images(stacked, size), 0, 255).astype(np.float32)
    step = float(field) / size
    return ViewSlices(
        images=resized,
        labels=np.asarray(labels, np.int64),
        class_names=list(VIEW_NAMES),
        spacing=(step, step),
        fingerprint=sha256_file(path),
        source=f"MNI152 T1 template (ICBM 2009a, nilearn wheel): {path.name}",
    )
