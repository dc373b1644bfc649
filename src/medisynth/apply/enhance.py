"""Apply a super-resolution model (a family with ``task = "super_resolve"``: srgan) to files:
the API of ``medisynth enhance``.

A 2D model enhances a PNG/TIFF image, or a volume (NIfTI, MGH, DICOM series) slice by slice
along the axis it was trained on (the in-plane axes are upsampled, the slice axis is kept); a 3D
model upsamples all three axes of a volume. The network is fully convolutional, so inputs of any
size are enhanced at their own size (no resize). Inputs are scaled to [-1, 1] with the model's
intensity map (or, for MR percentile maps, the same percentiles refitted on the input) and the
output is mapped back to the input's units with the inverse of that map. Intensities outside the
map's window are not cut off: the generator sees the clipped input, as in training, and its
residual is added to the interpolation of the unclipped input; the output is kept within the
input's own intensity range. Files go through the driver of :mod:`medisynth.apply.jobs`, shared
with ``medisynth translate``.

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

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from medisynth.apply.common import Model, open_package, require_task
from medisynth.apply.jobs import (
    apply_to_files,
    check_batch_size,
    check_input,
    per_image,
    scaling_map,
    slice_axis,
)
from medisynth.data.image import Image
from medisynth.data.intensity import IntensityMap
from medisynth.export.png import PngStorage, png_storage
from medisynth.gans.base import GANFamily
from medisynth.nets.srresnet import upsample
from medisynth.package import ModelPackage


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


def _family(package: ModelPackage) -> GANFamily:
    return require_task(package, "super_resolve", "enhance")


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
    array = np.asarray(array, dtype=np.float32)
    check_input(package, array, package.data.channels, "enhances")
    mapping = replace(input_map(package, array, scaling), clip=False)
    scaled = torch.from_numpy(np.ascontiguousarray(mapping.forward(array), dtype=np.float32))
    result = per_image(
        package, scaled, axis, lambda batch: _super_resolve(family, batch, batch_size)
    )
    package.require_finite(result, "super-resolution")
    values = np.asarray(mapping.inverse(result.numpy()), dtype=np.float32)
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    return np.clip(values, low, high)


def _super_resolve(family: GANFamily, scaled: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The generator sees the input clipped to [-1, 1], as in training; intensities outside
    that window (bright tails, background below the MR percentiles) are not cut off: they keep
    their interpolated values, and the generator's learned residual is added on top."""
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
    model: Model,
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

    The arguments are those of :func:`medisynth.apply.translate.translate` (the files go through
    the same driver, :func:`medisynth.apply.jobs.apply_to_files`); ``scaling`` is ``"auto"``,
    ``"model"`` or ``"input"`` (see :func:`input_map`). Outputs get the finer spacing.
    """
    check_batch_size(batch_size)
    package = open_package(model)
    family = _family(package)
    name = package.card.get("model_id", package.config.model.family)
    jobs = apply_to_files(
        package,
        input_path,
        output,
        apply=lambda image: enhance_image(package, image, axis, batch_size, scaling),
        png_storage=lambda image: _png_storage(package, image, scaling),
        trained_on=package.data.intensity_map,
        description=f"medisynth enhanced: {name}",
        done=f"enhanced (x{family.scale})",
        modality=modality,
        overwrite=overwrite,
    )
    return EnhanceResult(
        model_id=str(package.card.get("model_id", "")),
        scale=family.scale,
        outputs=[str(job.target) for job in jobs],
        shapes=[job.output.spatial_shape for job in jobs],
    )
