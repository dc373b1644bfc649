"""Apply an image-to-image model (pix2pix, CycleGAN) to files: the API of ``medisynth translate``.

A 2D model translates a PNG/TIFF image, or a whole volume (NIfTI, MGH, DICOM series) slice by
slice along the axis it was trained on; a 3D model translates whole volumes. Inputs are scaled
with the model's *source* intensity map, resized to the model's training size when they differ
(and back), and the output is mapped back to the *target* domain's units with the inverse target
map. NIfTI outputs keep the input's affine (spacing, orientation, origin) and shape.

>>> import numpy as np, tempfile, pathlib  # doctest: +SKIP
>>> translate("runs/t1_t2/model", "case_t1.nii.gz", "case_t2_synthetic.nii.gz")  # doctest: +SKIP
TranslateResult(model_id='pix2pix-...', outputs=['case_t2_synthetic.nii.gz'], ...)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from medisynth.data.image import Image
from medisynth.data.intensity import DEFAULT_PERCENTILES, IntensityMap, foreground_mask
from medisynth.data.io import files_with_suffixes
from medisynth.errors import ConfigError, MedisynthError
from medisynth.export.png import PngStorage, png_storage
from medisynth.package import ModelPackage, load_package

if TYPE_CHECKING:
    from medisynth.gans.pix2pix import ImageToImageFamily

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".npy")
IMAGE_SUFFIXES = (".png", ".npy")
_INPUT_SUFFIXES = (".nii", ".nii.gz", ".mgh", ".mgz", ".png", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass
class TranslateResult:
    """What :func:`translate` wrote."""

    model_id: str
    outputs: list[str] = field(default_factory=list)
    slices: int = 0


def _family(package: ModelPackage) -> ImageToImageFamily:
    from medisynth.gans.pix2pix import ImageToImageFamily

    if not isinstance(package.family, ImageToImageFamily):
        raise ConfigError(
            f"{package.path} is a {package.config.model.family} model; translate needs an "
            "image-to-image model (pix2pix or cyclegan)"
        )
    if package.config.model.family == "srgan":
        raise ConfigError(
            f"{package.path} is a super-resolution model; "
            "use `medisynth enhance MODEL INPUT -o OUTPUT`"
        )
    if package.data.source_intensity_map is None:
        raise ConfigError(f"{package.path}: the package has no source intensity map")
    return package.family


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


def scaling_map(saved: IntensityMap, array: np.ndarray, scaling: str = "auto") -> IntensityMap:
    """``saved`` (``"model"``), or its percentiles refitted on ``array`` (``"input"``);
    ``"auto"`` refits percentile maps only (see :func:`input_map`)."""
    if scaling not in ("auto", "model", "input"):
        raise ConfigError(f"input scaling must be auto, model or input, got {scaling!r}")
    if scaling == "model" or (scaling == "auto" and saved.kind != "percentile"):
        return saved
    return IntensityMap.percentile([array], DEFAULT_PERCENTILES, modality=saved.modality)


def slice_axis(package: ModelPackage, axis: int | None) -> int:
    """The axis a 2D model slices volumes along: ``axis``, else the training axis."""
    axis = package.config.data.axis if axis is None else axis
    if axis not in (0, 1, 2):
        raise ConfigError(f"slice axis must be 0, 1 or 2, got {axis}")
    return axis


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size below 1 (slices per forward pass)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ConfigError(
            f"batch size (--batch-size) must be a whole number >= 1, got {batch_size}"
        )


def translate_array(
    package: ModelPackage,
    array: np.ndarray,
    axis: int | None = None,
    batch_size: int = 16,
    source_scaling: str = "auto",
) -> np.ndarray:
    """Translate one ``(C, *spatial)`` image or volume in source units to target units.

    A 2D model applied to a volume works slice by slice along ``axis`` (default: the training
    axis, ``data.axis`` of the model's config). ``source_scaling`` picks the input's intensity
    map (see :func:`input_map`).
    """
    check_batch_size(batch_size)
    family = _family(package)
    data = package.data
    array = np.asarray(array, dtype=np.float32)
    if data.mask_labels:  # a mask -> image model: a label map in, at its own size
        from medisynth.data.masks import as_labels
        from medisynth.mask2image import synthesise

        if array.ndim != 1 + data.spatial_dims:
            raise ConfigError(f"the model takes {data.spatial_dims}D label maps, got {array.shape}")
        if any(not np.array_equal(array[0], plane) for plane in array[1:]):
            raise ConfigError(f"a label map has one channel, got {array.shape[0]} different ones")
        return synthesise(package, as_labels(array[0])[None], batch_size=batch_size)[0]
    channels = data.source_channels or data.channels
    if array.ndim not in (3, 4) or array.shape[0] != channels:
        raise ConfigError(
            f"the model translates images with {channels} channel(s), shaped (C, H, W) or "
            f"(C, D, H, W); got an array {array.shape}"
        )
    image_dims = array.ndim - 1
    if data.spatial_dims == 3 and image_dims == 2:
        raise ConfigError("this is a 3D model; it translates volumes, not 2D images")
    require_finite_input(array)
    source_map = input_map(package, array, source_scaling)
    scaled_array = np.asarray(source_map.forward(array), dtype=np.float32)
    if data.source_prior is not None:  # matched over the whole image or volume, then sliced
        prior = data.source_prior.apply(scaled_array, foreground_mask(array))
        scaled_array = np.concatenate([scaled_array, prior])
    scaled = torch.from_numpy(np.ascontiguousarray(scaled_array))
    if data.spatial_dims == image_dims:
        batch = scaled[None]
        out = family.translate(_resize(batch, data.spatial_shape), batch_size)
        result = _resize(out, tuple(batch.shape[2:]))[0]
    else:  # a 2D model on a volume: slices along the axis
        axis = slice_axis(package, axis)
        moved = scaled.movedim(axis + 1, 0)  # (S, C, H, W)
        out = family.translate(_resize(moved, data.spatial_shape), batch_size)
        result = _resize(out, tuple(moved.shape[2:])).movedim(0, axis + 1)
    package.require_finite(result, "translation")
    values = np.clip(result.numpy(), -1.0, 1.0)
    return np.asarray(data.intensity_map.inverse(values), dtype=np.float32)


def require_finite_input(array: np.ndarray) -> None:
    """ConfigError when an input image holds NaN or infinite values (they would spread through
    the network's convolutions and ruin the whole output)."""
    if not np.isfinite(array).all():
        raise ConfigError(
            "the input holds NaN or infinite values; replace them (e.g. with the background "
            "value) before applying the model"
        )


def trained_modality(trained_on: IntensityMap) -> str:
    """The modality a model's inputs were recorded as (upper case), ``""`` when unknown."""
    modality = trained_on.modality.upper()
    return "" if modality in ("", "UNKNOWN") else modality


def warn_unchecked_modality(trained_on: IntensityMap, model: Path) -> None:
    """Log a warning when the model does not record its input modality: inputs of any modality
    then go through it unchecked (retrain with ``data.modality`` set to fix that)."""
    if not trained_modality(trained_on):
        log.warning(
            "%s does not record the modality it was trained on, so the inputs' modality is not "
            "checked: make sure they are of the training modality (retrain with data.modality "
            "set, e.g. MR or CT, to have it checked)",
            model,
        )


def check_modality(trained_on: IntensityMap, image: Image, path: Path) -> None:
    """ConfigError when ``image`` is of another modality than the model's inputs (the file's
    own label, e.g. a DICOM Modality, or ``--modality``); nothing is checked when the model
    does not record its modality (see :func:`warn_unchecked_modality`)."""
    trained = trained_modality(trained_on)
    if image.modality and trained and image.modality.upper() != trained:
        raise ConfigError(
            f"{path} is {image.modality} but the model was trained on {trained} images; "
            "give an image of the training modality (or --modality to correct a wrong label)"
        )


def write_output(
    path: Path,
    array: np.ndarray,
    image: Image,
    description: str,
    storage: Callable[[], PngStorage],
) -> None:
    """Write ``array`` with ``image``'s geometry; the suffix picks NIfTI, PNG or ``.npy``.

    ``storage`` gives the PNG bit depth and window; it is called for PNG outputs only.
    """
    from medisynth.export.nifti import write_nifti
    from medisynth.export.png import write_png

    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        write_nifti(path, array, affine=image.affine, description=description)
    elif name.endswith(".png"):
        if image.ndim != 2:
            raise ConfigError(f"{path}: a volume cannot be written as PNG; use .nii.gz")
        write_png(path, array, storage=storage())
    elif name.endswith(".npy"):
        from medisynth.files import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, array)
    else:
        raise ConfigError(f"{path}: unknown output format; use .nii.gz, .nii, .png or .npy")


def input_jobs(src: Path, out: Path) -> list[tuple[Path, Path | None]]:
    """``(input file, output or None)`` pairs: every image file of a folder (outputs named in
    :func:`output_for`), else the one input (a file or a DICOM series folder) and ``out``."""
    if not src.exists():
        raise ConfigError(f"{src}: no such file or folder")
    files = files_with_suffixes(src, _INPUT_SUFFIXES) if src.is_dir() else []
    if not files:
        return [(src, out)]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: a folder input needs an output folder")
    return [(f, None) for f in files]


def output_for(path: Path, target: Path | None, out: Path, image: Image, overwrite: bool) -> Path:
    """The output of ``path``: ``target``, or ``out/<stem>.nii.gz|.png`` for folder inputs;
    refuses to overwrite a file unless ``overwrite``, and never the input itself."""
    if target is None:
        stem = path.name
        for suffix in (".nii.gz", *_INPUT_SUFFIXES):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        target = out / f"{stem}{'.nii.gz' if image.ndim == 3 else '.png'}"
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists; choose another output or pass --overwrite")
    if target.resolve() == path.resolve():
        raise ConfigError(f"{target} is the input; choose another output")
    return target


def translate(
    model: str | os.PathLike[str] | ModelPackage,
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    axis: int | None = None,
    modality: str | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    source_scaling: str = "auto",
) -> TranslateResult:
    """Translate a file, a DICOM series folder or a folder of images with ``model``.

    Args:
        model: a model package folder (``<run>/model``) or a loaded package.
        input_path: an image/volume file, a DICOM series folder or a folder of image files.
        output: the output file (its suffix picks the format: ``.nii.gz``, ``.png``, ``.npy``),
            or, for a folder input, an output folder (same names, volumes as ``.nii.gz``).
        axis: slice axis for a 2D model on volumes (default: the training axis).
        modality: the input's modality when the file does not say.
        overwrite: replace existing outputs (never done otherwise).
        batch_size: slices per forward pass.
        source_scaling: ``"auto"``, ``"model"`` or ``"input"`` (see :func:`input_map`).
    """
    from medisynth.data.io import read_image

    check_batch_size(batch_size)
    package = model if isinstance(model, ModelPackage) else load_package(model)
    _family(package)
    src, out = Path(input_path), Path(output)
    result = TranslateResult(model_id=str(package.card.get("model_id", "")))
    description = f"medisynth synthetic: {package.card.get('model_id', 'translation')}"
    target_map = package.data.intensity_map  # outputs are in the target's units
    storage = partial(png_storage, package.data.source_dtype, target_map.low, target_map.high)
    assert package.data.source_intensity_map is not None  # checked by _family
    warn_unchecked_modality(package.data.source_intensity_map, package.path)
    for path, target in input_jobs(src, out):
        image = read_image(path, modality=modality)
        check_modality(package.data.source_intensity_map, image, path)
        target = output_for(path, target, out, image, overwrite)
        try:
            translated = translate_array(package, image.array, axis, batch_size, source_scaling)
        except MedisynthError as err:
            raise ConfigError(f"{path}: {err}") from None
        write_output(target, translated, image, description, storage)
        if image.ndim == 3 and package.data.spatial_dims == 2:
            result.slices += image.array.shape[slice_axis(package, axis) + 1]
        else:
            result.slices += 1
        result.outputs.append(str(target))
        log.info("translated %s -> %s", path, target)
    return result
