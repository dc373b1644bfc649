"""The one file-job driver of ``medisynth translate`` and ``medisynth enhance``: read each input
(an image, a volume, a DICOM series, or every image of a folder), run the model on the whole
image or volume, or slice by slice when a 2D model meets a volume, in batches, and write each
output with the input's geometry (or the geometry the model gives it).

What differs between the two commands is passed in: the function that maps one input
:class:`~medisynth.data.image.Image` to its output, the PNG storage of an output, and the
intensity map whose modality the inputs must match.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from numbers import Integral
from pathlib import Path

import numpy as np
import torch

from medisynth.data.image import Image
from medisynth.data.intensity import DEFAULT_PERCENTILES, IntensityMap
from medisynth.data.io import files_with_suffixes
from medisynth.errors import ConfigError, MedisynthError
from medisynth.export.png import PngStorage
from medisynth.package import ModelPackage

log = logging.getLogger(__name__)

_INPUT_SUFFIXES = (".nii", ".nii.gz", ".mgh", ".mgz", ".png", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass
class FileJob:
    """One input file and what became of it."""

    source: Path
    target: Path
    image: Image
    output: Image


# ----------------------------------------------------------------------------- checks
def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size below 1 (slices per forward pass)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ConfigError(
            f"batch size (--batch-size) must be a whole number >= 1, got {batch_size}"
        )


def require_finite_input(array: np.ndarray) -> None:
    """ConfigError when an input image holds NaN or infinite values (they would spread through
    the network's convolutions and ruin the whole output)."""
    if not np.isfinite(array).all():
        raise ConfigError(
            "the input holds NaN or infinite values; replace them (e.g. with the background "
            "value) before applying the model"
        )


def check_input(package: ModelPackage, array: np.ndarray, channels: int, does: str) -> None:
    """ConfigError unless ``array`` is a finite ``(C, H, W)`` or ``(C, D, H, W)`` image with
    ``channels`` channels that the model can take (a 3D model takes no 2D image); ``does`` says
    what the model does (``"translates"``, ``"enhances"``)."""
    if array.ndim not in (3, 4) or array.shape[0] != channels:
        raise ConfigError(
            f"the model {does} images with {channels} channel(s), shaped (C, H, W) or "
            f"(C, D, H, W); got an array {array.shape}"
        )
    if package.data.spatial_dims == 3 and array.ndim == 3:
        raise ConfigError(f"this is a 3D model; it {does} volumes, not 2D images")
    require_finite_input(array)


def scaling_map(saved: IntensityMap, array: np.ndarray, scaling: str = "auto") -> IntensityMap:
    """``saved`` (``"model"``), or its percentiles refitted on ``array`` (``"input"``);
    ``"auto"`` refits percentile maps only (MR intensities have no absolute unit, so a new scan
    is normalised by itself, as the training data were; CT windows and integer ranges are
    absolute)."""
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


# ----------------------------------------------------------------------------- running
def per_image(
    package: ModelPackage,
    scaled: torch.Tensor,
    axis: int | None,
    run: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``run`` on a ``(C, *spatial)`` image as a batch: the whole image or volume as one item
    when the model has its dimensions, else its slices along ``axis`` (default: the training
    axis) as a batch ``(S, C, H, W)`` (a 2D model on a volume); the result has the input's
    layout."""
    if package.data.spatial_dims == scaled.ndim - 1:
        return run(scaled[None])[0]
    axis = slice_axis(package, axis)
    moved = scaled.movedim(axis + 1, 0)  # (S, C, H, W)
    return run(moved).movedim(0, axis + 1)


# ----------------------------------------------------------------------------- files
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


def apply_to_files(
    package: ModelPackage,
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    apply: Callable[[Image], Image],
    png_storage: Callable[[Image], PngStorage],
    trained_on: IntensityMap,
    description: str,
    done: str,
    modality: str | None = None,
    overwrite: bool = False,
) -> list[FileJob]:
    """Apply a model to a file, a DICOM series folder or every image of a folder.

    Args:
        package: the loaded model (its path names it in messages).
        input_path: an image/volume file, a DICOM series folder or a folder of image files.
        output: the output file (its suffix picks the format: ``.nii.gz``, ``.png``, ``.npy``),
            or, for a folder input, an output folder (same names, volumes as ``.nii.gz``).
        apply: the model on one input image -> the output image (its array and geometry are
            written).
        png_storage: the PNG depth and window of the output of an input image.
        trained_on: the intensity map of the model's inputs (its modality is checked).
        description: what NIfTI headers say the output is.
        done: the verb of the log line (``"translated"``).
        modality: the inputs' modality when the files do not say.
        overwrite: replace existing outputs (never done otherwise).
    """
    from medisynth.data.io import read_image

    src, out = Path(input_path), Path(output)
    warn_unchecked_modality(trained_on, package.path)
    jobs = []
    for path, target in input_jobs(src, out):
        image = read_image(path, modality=modality)
        check_modality(trained_on, image, path)
        target = output_for(path, target, out, image, overwrite)
        try:
            result = apply(image)
        except MedisynthError as err:
            raise ConfigError(f"{path}: {err}") from None
        write_output(target, result.array, result, description, partial(png_storage, image))
        jobs.append(FileJob(path, target, image, result))
        log.info("%s %s -> %s", done, path, target)
    return jobs
