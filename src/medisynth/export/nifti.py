"""NIfTI output via nibabel.

The spatial axes of ``(C, *spatial)`` become the NIfTI voxel axes in the same order; channels
beyond one go to the 5th dimension (NIfTI's vector dimension) for 3D, the 4th for 2D.

>>> import numpy as np, tempfile, pathlib, nibabel as nib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.nii.gz"
>>> write_nifti(path, np.ones((1, 3, 4), np.float32), spacing=(0.5, 0.5))
>>> nib.load(path).shape, nib.load(path).header.get_zooms()[:2]
((3, 4), (np.float32(0.5), np.float32(0.5)))
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from medisynth.files import atomic_path


def write_nifti(
    path: str | os.PathLike[str],
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    dtype: str = "float32",
    description: str = "medisynth synthetic image",
) -> None:
    """Write one ``(C, *spatial)`` image to ``path`` (``.nii`` or ``.nii.gz``)."""
    array = np.asarray(image)
    spatial_dims = array.ndim - 1
    if affine is None:
        affine = np.eye(4)
        for axis, step in enumerate(list(spacing or [1.0] * spatial_dims)[:3]):
            affine[axis, axis] = float(step)
    data = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    if array.shape[0] > 1 and spatial_dims == 2:
        data = data[:, :, None, :]  # (H, W, 1, C)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(np.dtype(dtype))
        data = np.clip(np.rint(data), info.min, info.max)
    nifti = nib.Nifti1Image(data.astype(dtype), affine)
    nifti.header["descrip"] = description[:79].encode()
    nifti.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(nifti, str(tmp))
