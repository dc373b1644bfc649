"""Apply a super-resolution model (``srgan``) to files: the API of ``medisynth enhance``.

A 2D model enhances a PNG/TIFF image, or a volume (NIfTI, MGH, DICOM series) slice by slice
along the axis it was trained on (the in-plane axes are upsampled, the slice axis is kept); a 3D
model upsamples all three axes of a volume. The network is fully convolutional, so inputs of any
size are enhanced at their own size (no resize). Inputs are scaled to [-1, 1] with the model's
intensity map (or, for MR percentile maps, the same percentiles refitted on the input) and the
output is mapped back to the input's units with the inverse of that map. Intensities outside the
map's window are not cut off: the generator sees the clipped input, as in training, and its
residual is added to the interpolation of the unclipped input; the output is kept within the
input's own intensity range.

Geometry convention: the *field of view is kept*. Upsampling an axis by ``s`` divides its
spacing by ``s``; the first voxel centre moves by ``-(s - 1) / (2 s)`` old voxels along that
axis, so the outer edges of the first and last voxels stay where they were (each old voxel is
split into ``s`` new ones whose centres average to the old centre; the same convention as
``torch`` interpolation with ``align_corners=False`` and as the area downsampling used in
training). Orientation (the affine's direction cosines) is unchanged.

>>> import numpy as np
>>> affine = np.diag([2.0, 2.0, 3.0, 1.0])
>>> new = upsampled_affine(affine, 2, axes=(0, 1))
>>> new[:3, :3].diagonal().tolist(), new[:3, 3].tolist()
([1.0, 1.0, 3.0], [-0.5, -0.5, 0.0])
>>> # the edge of voxel 0 (index -1/2) is at the same place before and after
>>> (affine @ [-0.5, -0.5, 0, 1])[:2].tolist(), (new @ [-0.5, -0.5, 0, 1])[:2].tolist()
([-1.0, -1.0], [-1.0, -1.0])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from medisynth.data.image import Image
from medisynth.data.intensity import IntensityMap
from medisynth.errors import ConfigError, MedisynthError
from medisynth.export.png import PngStorage, png_storage
from medisynth.package import ModelPackage, load_package
from medisynth.translate import (
    check_batch_size,
    check_modality,
    input_jobs,
    output_for,
    require_finite_input,
    scaling_map,
    slice_axis,
    warn_unchecked_modality,
    write_output,
)

if TYPE_CHECKING:
    from medisynth.gans.srgan import SRGAN

log = logging.getLogger(__name__)


@dataclass
class EnhanceResult:
    """What :func:`enhance` wrote."""

    model_id: str
    scale: int
    outputs: list[str] = field(default_factory=list)
    shapes: list[tuple[int, ...]] = field(default_factory=list)


def upsampled_affine(affine: np.ndarray, scale: int, axes: Sequence[int]) -> np.ndarray:
    """The voxel-to-world matrix after upsampling ``axes`` by ``scale`` with the field of view
    kept: those columns divided by ``scale``, the origin moved by ``-(scale - 1) / (2 scale)`` of
    each old column (see the module docstring)."""
    old = np.asarray(affine, dtype=np.float64)
    new = old.copy()
    shift = -(scale - 1) / (2.0 * scale)
    for axis in axes:
        new[:3, 3] += old[:3, axis] * shift
        new[:3, axis] = old[:3, axis] / scale
    return new


def _family(package: ModelPackage) -> SRGAN:
    from medisynth.gans.srgan import SRGAN

    if not isinstance(package.family, SRGAN):
        raise ConfigError(
            f"{package.path} is a {package.config.model.family} model; enhance needs a "
            "super-resolution model (srgan)"
        )
    return package.family


def input_map(package: ModelPackage, array: np.ndarray, scaling: str = "auto") -> IntensityMap:
    """The map that scales an input to [-1, 1] (and whose inverse gives the output's units).

    ``"model"``: the map saved with the model (CT windows, integer ranges). ``"input"``: the
    model's percentiles refitted on this input (MR has no absolute unit). ``"auto"``:
    ``"input"`` for percentile maps, ``"model"`` otherwise.
    """
    return scaling_map(package.data.intensity_map, array, scaling)


def enhance_array(
    package: ModelPackage,
    array: np.ndarray,
    axis: int | None = None,
    batch_size: int = 16,
    scaling: str = "auto",
) -> np.ndarray:
    """Super-resolve one ``(C, *spatial)`` image or volume (source units in and out).

    A 2D model on a volume works slice by slice along ``axis`` (default: the training axis)
    and upsamples the other two axes; a 3D model upsamples all three.
    """
    check_batch_size(batch_size)
    family = _family(package)
    data = package.data
    array = np.asarray(array, dtype=np.float32)
    if array.ndim not in (3, 4) or array.shape[0] != data.channels:
        raise ConfigError(
            f"the model enhances images with {data.channels} channel(s), shaped (C, H, W) or "
            f"(C, D, H, W); got an array {array.shape}"
        )
    image_dims = array.ndim - 1
    if data.spatial_dims == 3 and image_dims == 2:
        raise ConfigError("this is a 3D model; it enhances volumes, not 2D images")
    require_finite_input(array)
    mapping = replace(input_map(package, array, scaling), clip=False)
    scaled = torch.from_numpy(np.ascontiguousarray(mapping.forward(array), dtype=np.float32))
    if data.spatial_dims == image_dims:
        result = _super_resolve(family, scaled[None], batch_size)[0]
    else:  # a 2D model on a volume: slices along the axis
        axis = slice_axis(package, axis)
        moved = scaled.movedim(axis + 1, 0)  # (S, C, H, W)
        result = _super_resolve(family, moved, batch_size).movedim(0, axis + 1)
    package.require_finite(result, "super-resolution")
    values = np.asarray(mapping.inverse(result.numpy()), dtype=np.float32)
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    return np.clip(values, low, high)


def _super_resolve(family: SRGAN, scaled: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The generator sees the input clipped to [-1, 1], as in training; intensities outside
    that window (bright tails, background below the MR percentiles) are not cut off: they keep
    their interpolated values, and the generator's learned residual is added on top."""
    from medisynth.nets.srresnet import upsample

    clipped = scaled.clamp(-1.0, 1.0)
    out = []
    for start in range(0, len(scaled), batch_size):
        part = clipped[start : start + batch_size]
        residual = family.translate(part, batch_size) - upsample(part, family.scale)
        out.append(upsample(scaled[start : start + batch_size], family.scale) + residual)
    return torch.cat(out)


def upsampled_axes(package: ModelPackage, image_dims: int, axis: int | None = None) -> list[int]:
    """The spatial axes a model upsamples in an image with ``image_dims`` axes."""
    if package.data.spatial_dims == image_dims:
        return list(range(image_dims))
    kept = slice_axis(package, axis)
    return [a for a in range(image_dims) if a != kept]


def enhance_image(
    package: ModelPackage,
    image: Image,
    axis: int | None = None,
    batch_size: int = 16,
    scaling: str = "auto",
) -> Image:
    """Super-resolve an :class:`~medisynth.data.image.Image`; the result has the new spacing
    and affine (field of view, orientation and origin of the first voxel's edge kept)."""
    family = _family(package)
    values = enhance_array(package, image.array, axis, batch_size, scaling)
    axes = upsampled_axes(package, image.ndim, axis)
    spacing = tuple(s / family.scale if i in axes else s for i, s in enumerate(image.spacing))
    meta = {
        **image.meta,
        "enhanced": {"model": package.card.get("model_id", ""), "scale": family.scale},
    }
    return replace(
        image,
        array=values,
        spacing=spacing,
        affine=upsampled_affine(image.affine, family.scale, axes),
        meta=meta,
    )


def _png_storage(package: ModelPackage, image: Image, scaling: str) -> PngStorage:
    """PNG depth and window of the enhanced ``image``: its source type, the map that scaled it."""
    mapping = input_map(package, image.array, scaling)
    return png_storage(image.source_dtype, mapping.low, mapping.high)


def enhance(
    model: str | os.PathLike[str] | ModelPackage,
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    axis: int | None = None,
    modality: str | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    scaling: str = "auto",
) -> EnhanceResult:
    """Super-resolve a file, a DICOM series folder or a folder of images with ``model``.

    Args:
        model: a model package folder (``<run>/model``) or a loaded package.
        input_path: an image/volume file, a DICOM series folder or a folder of image files.
        output: the output file (its suffix picks the format: ``.nii.gz``, ``.png``, ``.npy``),
            or, for a folder input, an output folder (same names, volumes as ``.nii.gz``).
        axis: slice axis for a 2D model on volumes (default: the training axis).
        modality: the input's modality when the file does not say.
        overwrite: replace existing outputs (never done otherwise).
        batch_size: slices per forward pass.
        scaling: ``"auto"``, ``"model"`` or ``"input"`` (see :func:`input_map`).
    """
    from medisynth.data.io import read_image

    check_batch_size(batch_size)
    package = model if isinstance(model, ModelPackage) else load_package(model)
    family = _family(package)
    src, out = Path(input_path), Path(output)
    result = EnhanceResult(model_id=str(package.card.get("model_id", "")), scale=family.scale)
    description = f"medisynth enhanced: {package.card.get('model_id', 'srgan')}"
    warn_unchecked_modality(package.data.intensity_map, package.path)
    for path, target in input_jobs(src, out):
        image = read_image(path, modality=modality)
        check_modality(package.data.intensity_map, image, path)
        target = output_for(path, target, out, image, overwrite)
        try:
            enhanced = enhance_image(package, image, axis, batch_size, scaling)
        except MedisynthError as err:
            raise ConfigError(f"{path}: {err}") from None
        storage = partial(_png_storage, package, image, scaling)
        write_output(target, enhanced.array, enhanced, description, storage)
        result.outputs.append(str(target))
        result.shapes.append(enhanced.spatial_shape)
        log.info("enhanced %s -> %s (x%d)", path, target, family.scale)
    return result
