"""MedMNIST-layout ``.npz`` output: ``<split>_images`` and ``<split>_labels`` arrays.

Images are stored as MedMNIST does: ``(N, H, W)`` for grey 2D, ``(N, H, W, 3)`` for colour,
``(N, D, H, W)`` for volumes; labels as ``(N, 1)``.

>>> import numpy as np, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "synthetic.npz"
>>> write_medmnist_npz(path, np.zeros((2, 1, 4, 4)), np.array([0, 1]), dtype="uint8")
>>> sorted(np.load(path).files)
['train_images', 'train_labels']
"""

from __future__ import annotations

import io
import os

import numpy as np

from medisynth.errors import ConfigError
from medisynth.files import atomic_write_bytes


def write_medmnist_npz(
    path: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    split: str = "train",
    dtype: str = "uint8",
    masks: np.ndarray | None = None,
) -> None:
    """Write ``(N, C, *spatial)`` images and ``(N,)`` labels as one split of a MedMNIST file
    (and ``(N, *spatial)`` segmentation masks as ``{split}_masks`` when given)."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise ConfigError(f"{len(images)} images but {len(labels)} labels")
    if images.ndim == 4 and images.shape[1] == 3:
        stored = np.moveaxis(images, 1, -1)
    elif images.shape[1] == 1:
        stored = images[:, 0]
    else:
        raise ConfigError(f"MedMNIST layout holds 1 or 3 channels, got {images.shape[1]}")
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(np.dtype(dtype))
        stored = np.clip(np.rint(stored), info.min, info.max)
    label_dtype = np.uint8 if labels.size == 0 or labels.max() < 256 else np.int64
    buffer = io.BytesIO()
    arrays: dict[str, np.ndarray] = {
        f"{split}_images": stored.astype(dtype),
        f"{split}_labels": labels.astype(label_dtype).reshape(-1, 1),
    }
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (len(images), *images.shape[2:]):
            raise ConfigError(f"masks {masks.shape} do not fit images {images.shape}")
        arrays[f"{split}_masks"] = masks
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buffer.getvalue())
