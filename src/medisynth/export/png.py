"""PNG output: 8-bit for 8-bit sources, 16-bit where the source had more bits.

PNG holds unsigned integers only. Values of an integer source that fit ``0..65535`` are written
as they are; anything else (signed CT values, float MR intensities) is mapped linearly from the
model's intensity window to ``0..65535`` and the mapping is reported by :func:`png_storage`, so
the original units stay recoverable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from medisynth.errors import ConfigError
from medisynth.files import atomic_path


@dataclass(frozen=True)
class PngStorage:
    """How source values become PNG values: ``stored = round((value - offset) * scale)``."""

    dtype: str
    offset: float = 0.0
    scale: float = 1.0

    def encode(self, values: np.ndarray) -> np.ndarray:
        limit = 255 if self.dtype == "uint8" else 65535
        stored = np.rint((np.asarray(values, np.float64) - self.offset) * self.scale)
        return np.clip(stored, 0, limit).astype(self.dtype)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        return np.asarray(stored, np.float64) / self.scale + self.offset


def png_storage(source_dtype: str, low: float, high: float) -> PngStorage:
    """Choose 8- or 16-bit PNG storage for images whose source type and intensity window are given.

    >>> png_storage("uint8", 0, 255)
    PngStorage(dtype='uint8', offset=0.0, scale=1.0)
    >>> png_storage("float32", -1.0, 3.0).dtype
    'uint16'
    """
    if source_dtype == "uint8":
        return PngStorage("uint8")
    if source_dtype in ("uint16", "uint12") or (
        source_dtype.startswith(("int", "uint")) and low >= 0 and high <= 65535
    ):
        return PngStorage("uint16")
    return PngStorage("uint16", offset=float(low), scale=65535.0 / float(high - low))


def write_png(
    path: str | os.PathLike[str],
    image: np.ndarray,
    dtype: str = "uint8",
    storage: PngStorage | None = None,
) -> None:
    """Write one ``(C, H, W)`` image (C = 1 or 3) of source values as a PNG."""
    storage = storage or PngStorage(dtype)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ConfigError(f"PNG needs a (1 or 3, H, W) image, got {array.shape}")
    encoded = storage.encode(array)
    if array.shape[0] == 1:
        picture = PILImage.fromarray(encoded[0])
    else:
        if storage.dtype != "uint8":
            raise ConfigError("16-bit colour PNG is not supported; use --format nifti or npz")
        picture = PILImage.fromarray(np.moveaxis(encoded, 0, -1))
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
