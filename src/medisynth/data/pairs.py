"""Training data for image-to-image families: the loader of ``data.format: paired`` and
``unpaired`` (registered in :mod:`medisynth.data.formats`).

``path`` (source domain) and ``target_path`` (target domain) are each one image, one volume
(NIfTI, MGH, a DICOM series folder) or a folder of such files. Paired data pair the files by
sorted name and must be co-registered (same grid); volumes are cut into paired slices along
``data.axis``, keeping slices with at least ``data.min_foreground`` of anatomy in the source.
Unpaired data draw a random target for every source, so the two sides may differ in number.

Items are ``{"source", "target"}`` in [-1, 1], each side scaled by its own intensity map. The
returned :class:`~medisynth.data.info.DataInfo` describes the target (``intensity_map``,
``channels``) and the source (``source_intensity_map``, ``source_channels``).

>>> import numpy as np, tempfile, pathlib
>>> from medisynth.settings import DataConfig, expand_path
>>> from medisynth.export.nifti import write_nifti
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> vol = np.random.default_rng(0).random((1, 16, 16, 6)).astype(np.float32) + 1
>>> write_nifti(folder / "t1.nii.gz", vol)
>>> write_nifti(folder / "t2.nii.gz", 3 - vol)
>>> cfg = DataConfig(format="paired", path=str(folder / "t1.nii.gz"),
...                  target_path=str(folder / "t2.nii.gz"), axis=2)
>>> dataset, info = load_pair_data(cfg)
>>> len(dataset), sorted(dataset[0]), info.spatial_shape, info.source_channels
(6, ['source', 'target'], (16, 16), 1)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medisynth.data.datasets import PairedDataset, UnpairedDataset, volume_slices
from medisynth.data.histogram import HistogramPrior
from medisynth.data.image import Image, images_fingerprint
from medisynth.data.info import DataInfo
from medisynth.data.intensity import IntensityMap, fit_intensity_map, normalise_in_brain
from medisynth.data.io import read_images
from medisynth.data.resize import resize_images
from medisynth.errors import ConfigError
from medisynth.settings import DataConfig, expand_path

log = logging.getLogger(__name__)

_SUFFIXES = (".nii", ".nii.gz", ".mgh", ".mgz", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy")


def read_side(path: Path, modality: str | None = None) -> list[Image]:
    """The images at ``path``: a file, a DICOM series folder, or a folder of image files
    (sorted by name)."""
    return read_images(path, _SUFFIXES, modality, series_folder=True)


def _slices(images: list[Image], axis: int | None, min_foreground: float) -> np.ndarray:
    """``(N, C, H, W)`` slices of volumes (or the images themselves: 2D images, or volumes
    when ``axis`` is None)."""
    planes: list[np.ndarray] = []
    for image in images:
        if image.ndim == 2 or axis is None:
            planes.append(image.array)
            continue
        planes.extend(volume_slices(image, axis, min_foreground)[1])
    if not planes:
        raise ConfigError(
            f"no slice has {min_foreground:.0%} foreground; lower data.min_foreground"
        )
    if len({p.shape for p in planes}) > 1:
        raise ConfigError("the images differ in size; resample them to one grid first")
    return np.stack(planes).astype(np.float32)


def _resize(tensor: torch.Tensor, size: int | None) -> torch.Tensor:
    if not size:
        return tensor
    return torch.from_numpy(resize_images(tensor.numpy(), size)).clamp(-1.0, 1.0)


def _in_brain(images: list[Image], mask_path: str | None, key: str) -> list[Image]:
    """``images`` put on the in-brain scale (:func:`normalise_in_brain`), with the brain masks
    at ``mask_path`` (one per image, by sorted name) or, without, the voxels above 0."""
    if mask_path is None:
        return [replace(image, array=normalise_in_brain(image.array)) for image in images]
    masks = read_side(expand_path(mask_path))
    if len(masks) != len(images):
        raise ConfigError(
            f"{key} needs one brain mask per scan: {len(masks)} masks for {len(images)} scans"
        )
    return [
        replace(image, array=normalise_in_brain(image.array, mask.array))
        for image, mask in zip(images, masks, strict=True)
    ]


def in_brain_pairs(
    config: DataConfig, sources: list[Image], targets: list[Image]
) -> tuple[list[Image], list[Image]]:
    """Sources and targets on the in-brain scale (``data.normalisation: brain``): paired
    targets share the sources' masks, unpaired ones take ``data.target_brain_mask_path``."""
    if config.target_brain_mask_path and config.format == "paired":
        raise ConfigError("paired targets share data.brain_mask_path; drop target_brain_mask_path")
    sources = _in_brain(sources, config.brain_mask_path, "data.brain_mask_path")
    if config.format == "unpaired":
        key, masks = "data.target_brain_mask_path", config.target_brain_mask_path
    else:
        key, masks = "data.brain_mask_path", config.brain_mask_path
    return sources, _in_brain(targets, masks, key)


def load_pair_data(config: DataConfig) -> tuple[Dataset[dict[str, torch.Tensor]], DataInfo]:
    """Read ``config.path`` / ``config.target_path`` into a paired or unpaired dataset."""
    if config.format not in ("paired", "unpaired"):
        raise ConfigError(
            f"load_pair_data needs data.format paired or unpaired, not {config.format}"
        )
    src_path, tgt_path = config.resolved_path(), config.resolved_target_path()
    sources = read_side(src_path, config.modality)
    targets = read_side(tgt_path, config.target_modality)
    for image in targets:  # the files say nothing: the target is of the source's modality
        image.modality = image.modality or (config.modality or "").upper()
    dims = {img.ndim for img in sources + targets}
    if len(dims) > 1:
        raise ConfigError("source and target images mix 2D images and 3D volumes")
    slicing = dims == {3} and config.volumes == "slices"  # volumes cut into 2D slices
    source_map: IntensityMap | None = None
    target_map: IntensityMap | None = None
    if config.normalisation == "brain":
        sources, targets = in_brain_pairs(config, sources, targets)
        source_map = IntensityMap.in_brain(sources[0].modality or "MR")
        target_map = IntensityMap.in_brain(targets[0].modality or "MR")
    dataset: Dataset[dict[str, torch.Tensor]]
    prior: HistogramPrior | None = None
    if config.format == "paired":
        if len(sources) != len(targets):
            raise ConfigError(
                f"paired data need as many targets as sources: {len(sources)} files at "
                f"{src_path}, {len(targets)} at {tgt_path}"
            )
        paired = PairedDataset(
            sources,
            targets,
            config.axis if slicing else None,
            config.min_foreground,
            source_map=source_map,
            target_map=target_map,
            prior=config.source_prior,
        )
        source_map, target_map, prior = paired.source_map, paired.target_map, paired.prior
        paired.sources = _resize(paired.sources, config.image_size)
        paired.targets = _resize(paired.targets, config.image_size)
        if paired.priors is not None:
            paired.priors = _resize(paired.priors, config.image_size)
        src_t, tgt_t = paired.sources, paired.targets
        dataset = paired
    else:
        axis = config.axis if slicing else None
        src_arr = _slices(sources, axis, config.min_foreground)
        tgt_arr = _slices(targets, axis, config.min_foreground)
        source_map = source_map or fit_intensity_map(
            [img.array for img in sources], sources[0].modality, sources[0].source_dtype
        )
        target_map = target_map or fit_intensity_map(
            [img.array for img in targets], targets[0].modality, targets[0].source_dtype
        )
        src_t = _resize(torch.from_numpy(source_map.forward(src_arr)), config.image_size)
        tgt_t = _resize(torch.from_numpy(target_map.forward(tgt_arr)), config.image_size)
        if src_t.shape[2:] != tgt_t.shape[2:]:
            raise ConfigError(
                f"source images {tuple(src_t.shape[2:])} and target images "
                f"{tuple(tgt_t.shape[2:])} differ in size; set data.image_size"
            )
        dataset = UnpairedDataset(src_t, tgt_t)
    first = targets[0]
    if slicing:
        plane = [s for i, s in enumerate(first.spacing) if i != config.axis]
        spacing: tuple[float, ...] = (float(plane[0]), float(plane[1]))
    else:
        spacing = tuple(first.spacing)
    if config.image_size:  # the resize changed the pixel size
        sides = _planes(first, config, slicing)
        spacing = tuple(s * n / config.image_size for s, n in zip(spacing, sides, strict=True))
    what = f"slices (axis {config.axis}) of " if slicing else ""
    info = DataInfo(
        channels=int(tgt_t.shape[1]),
        spatial_shape=tuple(int(s) for s in tgt_t.shape[2:]),
        class_names=["pair"],
        class_counts={0: len(dataset)},
        intensity_map=target_map,
        source_dtype=first.source_dtype,
        modality=first.modality,
        spacing=spacing,
        fingerprint=images_fingerprint(source=sources, target=targets),
        source=(
            f"{config.format} data: {len(src_t)} source and {len(tgt_t)} target {what}"
            f"{len(sources)} + {len(targets)} {'volume' if dims == {3} else 'image'} file(s)"
        ),
        source_intensity_map=source_map,
        source_channels=int(src_t.shape[1]),
        source_prior=prior,
    )
    log.info("data: %s, %s", info.source, info.spatial_shape)
    return dataset, info


def _planes(image: Image, config: DataConfig, slicing: bool) -> list[int]:
    shape = list(image.spatial_shape)
    if slicing:
        del shape[config.axis]
    return shape
