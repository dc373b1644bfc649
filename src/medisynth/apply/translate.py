"""Apply an image-to-image model (a family with ``task = "translate"``: pix2pix, CycleGAN) to
files: the API of ``medisynth translate``.

A 2D model translates a PNG/TIFF image, or a whole volume (NIfTI, MGH, DICOM series) slice by
slice along the axis it was trained on; a 3D model translates whole volumes. Inputs are scaled
with the model's *source* intensity map, resized to the model's training size when they differ
(and back), and the output is mapped back to the *target* domain's units with the inverse target
map. NIfTI outputs keep the input's affine (spacing, orientation, origin) and shape. Files go
through the driver of :mod:`medisynth.apply.jobs`, shared with ``medisynth enhance``.

Several models of one recipe (e.g. trained with different seeds) can translate together: the
output is the mean of their translations in the target's units (:func:`translate_ensemble`;
``medisynth translate MODEL --ensemble MODEL2 ...``). Each model's own artefacts average out.

>>> import numpy as np, tempfile, pathlib  # doctest: +SKIP
>>> translate("runs/t1_t2/model", "case_t1.nii.gz", "case_t2_synthetic.nii.gz")  # doctest: +SKIP
TranslateResult(model_id='pix2pix-...', outputs=['case_t2_synthetic.nii.gz'], ...)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medisynth.apply.common import Model, open_package, require_task
from medisynth.apply.jobs import (
    apply_to_files,
    check_batch_size,
    check_input,
    input_jobs,
    per_image,
    scaling_map,
    slice_axis,
)
from medisynth.apply.mask2image import synthesise
from medisynth.data.image import Image
from medisynth.data.intensity import (
    IntensityMap,
    brain_region,
    foreground_mask,
    normalise_in_brain,
)
from medisynth.data.masks import as_labels
from medisynth.errors import ConfigError
from medisynth.export.png import PngStorage, png_storage
from medisynth.gans.base import GANFamily
from medisynth.package import ModelPackage


@dataclass
class TranslateResult:
    """What :func:`translate` wrote."""

    model_id: str
    outputs: list[str] = field(default_factory=list)
    slices: int = 0


def _family(package: ModelPackage) -> GANFamily:
    """The package's family, checked to translate images and to know its source's units."""
    family = require_task(package, "translate", "translate")
    if package.data.source_intensity_map is None:
        raise ConfigError(f"{package.path}: the package has no source intensity map")
    return family


def _resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if x.ndim == 4:
        shrink = any(s < t for s, t in zip(size, x.shape[2:], strict=True))
        return F.interpolate(x, size=size, mode="bilinear", antialias=shrink, align_corners=False)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def input_map(package: ModelPackage, array: np.ndarray, scaling: str = "auto") -> IntensityMap:
    """The map that scales an input to [-1, 1].

    ``"model"``: the source map saved with the model (absolute units: CT windows, integer
    ranges). ``"input"``: the same percentiles refitted on this input (MR intensities have no
    absolute unit, so a new scan is normalised by itself, as the training volume was).
    ``"auto"``: ``"input"`` for percentile maps, ``"model"`` otherwise.
    """
    source_map = package.data.source_intensity_map
    if source_map is None:
        raise ConfigError(f"{package.path}: the package has no source intensity map")
    return scaling_map(source_map, array, scaling)


def translate_array(
    package: ModelPackage,
    array: np.ndarray,
    axis: int | None = None,
    batch_size: int = 16,
    source_scaling: str = "auto",
    brain_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Translate one ``(C, *spatial)`` image or volume in source units to target units.

    A 2D model applied to a volume works slice by slice along ``axis`` (default: the training
    axis, ``data.axis`` of the model's config). ``source_scaling`` picks the input's intensity
    map (see :func:`input_map`). A model trained with ``data.normalisation: brain`` first puts
    the input on its in-brain scale (:func:`~medisynth.data.intensity.normalise_in_brain`, with
    ``brain_mask`` or the voxels above 0) and returns the output on that 0..1 scale, 0 outside
    the brain.
    """
    check_batch_size(batch_size)
    family = _family(package)
    data = package.data
    array = np.asarray(array, dtype=np.float32)
    in_brain = data.source_intensity_map is not None and data.source_intensity_map.kind == "brain"
    if brain_mask is not None and not in_brain:
        raise ConfigError(
            "a brain mask is for models trained with data.normalisation: brain; this one was not"
        )
    if data.mask_labels:  # a mask -> image model: a label map in, at its own size
        if array.ndim != 1 + data.spatial_dims:
            raise ConfigError(f"the model takes {data.spatial_dims}D label maps, got {array.shape}")
        if any(not np.array_equal(array[0], plane) for plane in array[1:]):
            raise ConfigError(f"a label map has one channel, got {array.shape[0]} different ones")
        return synthesise(package, as_labels(array[0])[None], batch_size=batch_size)[0]
    check_input(package, array, data.source_channels or data.channels, "translates")
    region = None
    if in_brain:
        region = brain_region(array, brain_mask)
        array = normalise_in_brain(array, brain_mask)
    source_map = input_map(package, array, source_scaling)
    scaled_array = np.asarray(source_map.forward(array), dtype=np.float32)
    if data.source_prior is not None:  # matched over the whole image or volume, then sliced
        prior = data.source_prior.apply(scaled_array, foreground_mask(array))
        scaled_array = np.concatenate([scaled_array, prior])
    scaled = torch.from_numpy(np.ascontiguousarray(scaled_array))

    def run(batch: torch.Tensor) -> torch.Tensor:
        out = family.translate(_resize(batch, data.spatial_shape), batch_size)
        return _resize(out, tuple(batch.shape[2:]))

    result = per_image(package, scaled, axis, run)
    package.require_finite(result, "translation")
    values = np.asarray(data.intensity_map.inverse(np.clip(result.numpy(), -1.0, 1.0)))
    if region is not None:
        values = values * region
    return values.astype(np.float32)


def ensemble_packages(models: Sequence[Model]) -> list[ModelPackage]:
    """The loaded members of an ensemble, checked to translate between the same domains on the
    same scales: the same source and target modality and kinds of intensity map (what the
    averaged outputs mean)."""
    packages = [open_package(m) for m in models]
    if not packages:
        raise ConfigError("an ensemble needs at least one model")
    first = packages[0]
    for package in packages:
        _family(package)

    def domains(package: ModelPackage) -> tuple[object, ...]:
        source, target = package.data.source_intensity_map, package.data.intensity_map
        assert source is not None  # checked by _family
        return (source.modality, source.kind, target.modality, target.kind)

    for package in packages[1:]:
        if domains(package) != domains(first):
            raise ConfigError(
                f"{package.path} and {first.path} do not translate between the same domains "
                "(source and target modality and intensity scale); an ensemble averages models "
                "of one task"
            )
    return packages


def translate_ensemble(
    packages: Sequence[ModelPackage],
    array: np.ndarray,
    axis: int | None = None,
    batch_size: int = 16,
    source_scaling: str = "auto",
    brain_mask: np.ndarray | None = None,
) -> np.ndarray:
    """The mean of :func:`translate_array` over the models (same arguments), in the target's
    units.

    >>> translate_ensemble([seed0, seed1], t1_volume, axis=2)  # doctest: +SKIP
    """
    members = ensemble_packages(packages)
    total = np.zeros((), np.float64)
    for package in members:
        total = total + translate_array(package, array, axis, batch_size, source_scaling,
                                        brain_mask)  # fmt: skip
    return (total / len(members)).astype(np.float32)


def translate(
    model: Model | Sequence[Model],
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    axis: int | None = None,
    modality: str | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    source_scaling: str = "auto",
    brain_mask: str | os.PathLike[str] | None = None,
) -> TranslateResult:
    """Translate a file, a DICOM series folder or a folder of images with ``model``.

    Args:
        model: a model package folder (``<run>/model``) or a loaded package; several of them
            for an ensemble (the mean of their translations, see :func:`ensemble_packages`).
        input_path: an image/volume file, a DICOM series folder or a folder of image files.
        output: the output file (its suffix picks the format: ``.nii.gz``, ``.png``, ``.npy``),
            or, for a folder input, an output folder (same names, volumes as ``.nii.gz``).
        axis: slice axis for a 2D model on volumes (default: the training axis).
        modality: the input's modality when the file does not say.
        overwrite: replace existing outputs (never done otherwise).
        batch_size: slices per forward pass.
        source_scaling: ``"auto"``, ``"model"`` or ``"input"`` (see :func:`input_map`).
        brain_mask: the input's brain mask (one input file), for a model trained with
            ``data.normalisation: brain``; default: the voxels above 0.
    """
    from medisynth.data.io import read_image

    check_batch_size(batch_size)
    members = ensemble_packages(
        list(model) if isinstance(model, Sequence) and not isinstance(model, str) else [model]
    )
    package = members[0]
    data = package.data
    assert data.source_intensity_map is not None  # checked by _family
    target_map = data.intensity_map  # outputs are in the target's units
    model_id = str(package.card.get("model_id", "translation"))
    if len(members) > 1:
        model_id = f"ensemble of {len(members)}: " + " + ".join(
            str(m.card.get("model_id", "?")) for m in members
        )
    mask = None
    if brain_mask is not None:
        if len(input_jobs(Path(input_path), Path(output))) != 1:
            raise ConfigError("a brain mask goes with one input file, not a folder of them")
        mask = read_image(Path(brain_mask)).array

    def apply(image: Image) -> Image:
        values = translate_ensemble(
            members, image.array, axis=axis, batch_size=batch_size,
            source_scaling=source_scaling, brain_mask=mask,
        )  # fmt: skip
        return replace(image, array=values)  # the input's geometry

    def png(image: Image) -> PngStorage:
        return png_storage(data.source_dtype, target_map.low, target_map.high)

    jobs = apply_to_files(
        package,
        input_path,
        output,
        apply=apply,
        png_storage=png,
        trained_on=data.source_intensity_map,
        description=f"medisynth synthetic: {model_id}",
        done="translated",
        modality=modality,
        overwrite=overwrite,
    )
    result = TranslateResult(model_id=model_id)
    for job in jobs:
        if job.image.ndim == 3 and data.spatial_dims == 2:
            result.slices += job.image.array.shape[slice_axis(package, axis) + 1]
        else:
            result.slices += 1
        result.outputs.append(str(job.target))
    return result
