"""Resizing image batches to a square (or cubic) grid, as ``data.image_size`` asks.

>>> import numpy as np
>>> resize_images(np.ones((2, 1, 8, 6), np.float32), 4).shape
(2, 1, 4, 4)
>>> resize_images(np.ones((1, 1, 6, 6, 6), np.float32), 3).shape
(1, 1, 3, 3, 3)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(N, C, *spatial)`` float images to ``size`` per side (antialiased for 2D)."""
    spatial = images.shape[2:]
    if all(s == size for s in spatial):
        return images
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if len(spatial) == 2:
        out = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True)
    else:
        out = F.interpolate(tensor, size=(size,) * len(spatial), mode="trilinear")
    return out.numpy()
