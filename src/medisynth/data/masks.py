"""Label maps as model inputs: integer labels checked, then one-hot encoded in [-1, 1].

A label map holds one integer label per pixel, ``0..K-1`` (``0`` = background). Binary masks
stored as 0/255 (PNG, GIF) read as 0/1. A mask -> image model sees the ``K`` one-hot channels,
+1 where the pixel has that label and -1 elsewhere.

>>> import numpy as np
>>> labels = as_labels(np.array([[0, 255], [255, 0]], np.float32))
>>> labels.tolist()
[[0, 1], [1, 0]]
>>> one_hot(labels[None], 2)[0, 1].tolist()
[[-1.0, 1.0], [1.0, -1.0]]
"""

from __future__ import annotations

import numpy as np
import torch

from medisynth.data.image import Image
from medisynth.errors import ConfigError


def as_labels(mask: np.ndarray, where: str = "mask") -> np.ndarray:
    """Integer labels (int64) from a stored mask: 0/255 becomes 0/1; fractions are an error."""
    values = np.asarray(mask, dtype=np.float32)
    if values.size and set(np.unique(values).tolist()) <= {0.0, 255.0}:
        values = values / 255.0
    if not np.all(np.isfinite(values)) or not np.allclose(values, np.round(values)):
        raise ConfigError(f"{where}: masks must hold integer labels (found fractional values)")
    if values.size and values.min() < 0:
        raise ConfigError(f"{where}: mask labels must be >= 0, found {values.min():g}")
    return np.round(values).astype(np.int64)


def one_hot(labels: np.ndarray | torch.Tensor, num_labels: int) -> torch.Tensor:
    """``(N, *S)`` integer labels -> ``(N, num_labels, *S)`` float32, +1 on the label, -1 off."""
    tensor = torch.as_tensor(labels, dtype=torch.int64)
    if tensor.numel() and int(tensor.max()) >= num_labels:
        raise ConfigError(
            f"the mask holds label {int(tensor.max())} but the model knows labels "
            f"0..{num_labels - 1}"
        )
    encoded = torch.nn.functional.one_hot(tensor, num_labels).movedim(-1, 1)
    return encoded.float() * 2.0 - 1.0


def mask_plane(mask: Image) -> np.ndarray:
    """The one channel of a mask image (a grey mask saved as RGB, e.g. a palette GIF, has three
    equal channels); a ConfigError for a colour image.

    >>> grey = Image(np.repeat(np.eye(2, dtype=np.float32)[None], 3, axis=0), (1, 1))
    >>> mask_plane(grey).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    array = mask.array
    if array.shape[0] > 1 and all(np.array_equal(array[0], a) for a in array[1:]):
        array = array[:1]
    if array.shape[0] != 1:
        raise ConfigError(
            f"mask {mask.path} has {array.shape[0]} different channels; a label map has one"
        )
    return array[0]


def check_mask_grid(image: Image, mask: Image) -> None:
    """A ConfigError unless ``mask`` lies on ``image``'s grid (same spatial shape)."""
    if image.spatial_shape != mask.spatial_shape:
        raise ConfigError(
            f"mask {mask.path} {mask.spatial_shape} does not match image {image.path} "
            f"{image.spatial_shape}: label maps must be on the images' grid"
        )
