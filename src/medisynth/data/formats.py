"""The registry of training-data formats: ``data.format`` -> the loader that reads it.

A loader takes the run's :class:`~medisynth.settings.DataConfig` and returns the training
dataset (dict items in [-1, 1]) with its :class:`~medisynth.data.info.DataInfo` (shape, classes
and their counts, intensity maps, fingerprint). :func:`load_training_data` dispatches through
:data:`DATA_FORMATS`; the engine calls nothing else to read data.

* ``medmnist``, ``folder``, ``slices``, ``mni152_views``: class-labelled images,
  ``{"image", "label"}`` (:class:`~medisynth.data.datasets.LabeledImageDataset`), read here;
* ``paired``, ``unpaired``: ``{"source", "target"}`` (:mod:`medisynth.data.pairs`);
* ``image_mask``: ``{"source": one-hot label map, "target"}`` (:mod:`medisynth.data.image_mask`).

Adding a format = a loader, one line in :data:`DATA_FORMATS` and its name in
``DataConfig.format`` (a test keeps the two in step).

>>> data_format_names()
['folder', 'image_mask', 'medmnist', 'mni152_views', 'paired', 'slices', 'unpaired']
>>> dataset, info = load_training_data(DataConfig(format="mni152_views", image_size=16))
>>> info.class_names, tuple(dataset[0]["image"].shape)
(['axial', 'coronal', 'sagittal'], (1, 16, 16))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medisynth.data.datasets import LabeledImageDataset, volume_slices
from medisynth.data.image_mask import load_image_mask_data
from medisynth.data.info import DataInfo
from medisynth.data.intensity import fit_intensity_map
from medisynth.data.io import read_image, read_image_folder, read_medmnist
from medisynth.data.mni152 import mni152_views
from medisynth.data.pairs import load_pair_data
from medisynth.data.privacy import identifying_reason
from medisynth.data.resize import resize_images
from medisynth.errors import ConfigError
from medisynth.settings import DataConfig

log = logging.getLogger(__name__)

#: what a loader returns: the training dataset (dict items) and what it holds
TrainingData = tuple[Dataset[dict[str, torch.Tensor]], DataInfo]
#: a loader: the run's data settings -> the training data
FormatLoader = Callable[[DataConfig], TrainingData]


@dataclass
class LabelledImages:
    """Class-labelled images as read, before scaling: ``(N, C, *S)`` in stored units."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source_dtype: str
    modality: str
    fingerprint: str
    source: str
    spacing: tuple[float, ...] | None


def read_medmnist_split(config: DataConfig) -> LabelledImages:
    """``medmnist``: one split of a MedMNIST-layout ``.npz`` (single-label), as read."""
    path = config.resolved_path()
    arrays = read_medmnist(path)
    if config.split not in arrays.images:
        raise ConfigError(
            f"{path}: no split {config.split!r}; available: {', '.join(arrays.splits)}"
        )
    images = arrays.images[config.split]
    labels = arrays.labels[config.split]
    if labels.ndim != 1:
        raise ConfigError(f"{path}: multi-label data cannot drive a class-conditional GAN")
    if config.image_size:
        images = resize_images(images, config.image_size)
    n_classes = int(labels.max()) + 1 if len(labels) else 1
    return LabelledImages(
        images,
        labels,
        list(config.class_names or [str(i) for i in range(n_classes)]),
        arrays.source_dtype,
        (config.modality or arrays.modality).upper(),
        arrays.fingerprint,
        f"MedMNIST npz (1 file), split {config.split!r}: {len(images)} images",
        None,
    )


def read_folder(config: DataConfig) -> LabelledImages:
    """``folder``: a folder of images or DICOM files, labelled by subfolders or a CSV.

    The source description names the format, the file count and the modality but not the path:
    a folder of patient data is often named after the patient, and the model package must carry
    no identifiers. For the same reason class names taken from subfolder names (or a label
    CSV) are checked (:mod:`medisynth.data.privacy`) unless ``data.class_names`` gives them.
    """
    path = config.resolved_path()
    folder = read_image_folder(path, labels=config.labels, modality=config.modality)
    names = _folder_class_names(config, folder.class_names, path)
    source = (
        f"image folder: {len(folder.files)} files, {len(folder.images)} images, "
        f"{len(names)} class{'es' if len(names) != 1 else ''}"
    )
    read = LabelledImages(
        folder.images,
        folder.labels,
        names,
        folder.source_dtype,
        folder.modality,
        folder.fingerprint,
        source,
        folder.spacing,
    )
    return _resized(read, config)


def read_slices(config: DataConfig) -> LabelledImages:
    """``slices``: the 2D slices of one volume along ``data.axis`` with at least
    ``data.min_foreground`` of anatomy (NIfTI, MGH or a DICOM series folder)."""
    path = config.resolved_path()
    volume = read_image(path, modality=config.modality)
    if volume.ndim != 3:
        raise ConfigError(f"{path}: data.format 'slices' needs a 3D volume")
    kept, images = volume_slices(volume, config.axis, config.min_foreground)
    if not kept:
        raise ConfigError(
            f"{path}: no slice has {config.min_foreground:.0%} foreground; "
            "lower data.min_foreground"
        )
    files = int(volume.meta.get("files", 1))
    source = (
        f"{len(images)} slices (axis {config.axis}) of a {volume.meta.get('format', '')} "
        f"volume {volume.spatial_shape} ({files} file{'s' if files != 1 else ''})"
    )
    plane = [s for i, s in enumerate(volume.spacing) if i != config.axis]
    read = LabelledImages(
        images,
        np.zeros(len(images), np.int64),
        list(config.class_names or ["slice"]),
        volume.source_dtype,
        volume.modality,
        volume.fingerprint,
        source,
        (float(plane[0]), float(plane[1])),
    )
    return _resized(read, config)


def read_mni152_views(config: DataConfig) -> LabelledImages:
    """``mni152_views``: slices of the MNI152 T1 template, the view being the class
    (:mod:`medisynth.data.mni152`; no file needed)."""
    views = mni152_views(config.image_size or 64)
    return LabelledImages(
        views.images,
        views.labels,
        list(config.class_names or views.class_names),
        "uint8",
        (config.modality or "MR").upper(),  # the MNI152 T1 template
        views.fingerprint,
        views.source,
        views.spacing,
    )


#: the class-labelled formats: ``data.format`` -> the reader of its images as stored
LABELLED_READERS: dict[str, Callable[[DataConfig], LabelledImages]] = {
    "medmnist": read_medmnist_split,
    "folder": read_folder,
    "slices": read_slices,
    "mni152_views": read_mni152_views,
}


def read_labelled_images(config: DataConfig) -> LabelledImages:
    """The class-labelled images ``config`` names, as stored (before scaling), for code that
    trains on part of them (see :func:`subset`); :func:`load_training_data` reads the same.

    Raises:
        ConfigError: a format without class labels (pairs, image + mask).
    """
    reader = LABELLED_READERS.get(config.format)
    if reader is None:
        raise ConfigError(
            f"data.format {config.format!r} holds no class-labelled images; this needs one of "
            + ", ".join(sorted(LABELLED_READERS))
        )
    return reader(config)


def subset(read: LabelledImages, indices: np.ndarray, fingerprint: str) -> LabelledImages:
    """The images of ``read`` at ``indices`` (and only those), under a new ``fingerprint``.

    >>> images = LabelledImages(np.zeros((4, 1, 2, 2)), np.array([0, 1, 0, 1]), ["a", "b"],
    ...                         "uint8", "", "abc", "four images", None)
    >>> part = subset(images, np.array([1, 2]), "abc:part")
    >>> part.labels.tolist(), part.fingerprint, part.source
    ([1, 0], 'abc:part', 'four images; a subset of 2 images')
    """
    indices = np.asarray(indices, np.int64)
    return LabelledImages(
        read.images[indices],
        read.labels[indices],
        list(read.class_names),
        read.source_dtype,
        read.modality,
        fingerprint,
        f"{read.source}; a subset of {len(indices)} images",
        read.spacing,
    )


def load_medmnist(config: DataConfig) -> tuple[LabeledImageDataset, DataInfo]:
    """``medmnist``: one split of a MedMNIST-layout ``.npz`` (single-label)."""
    return labelled_dataset(read_medmnist_split(config))


def load_folder(config: DataConfig) -> tuple[LabeledImageDataset, DataInfo]:
    """``folder``: see :func:`read_folder`."""
    return labelled_dataset(read_folder(config))


def load_slices(config: DataConfig) -> tuple[LabeledImageDataset, DataInfo]:
    """``slices``: see :func:`read_slices`."""
    return labelled_dataset(read_slices(config))


def load_mni152_views(config: DataConfig) -> tuple[LabeledImageDataset, DataInfo]:
    """``mni152_views``: see :func:`read_mni152_views`."""
    return labelled_dataset(read_mni152_views(config))


def _resized(read: LabelledImages, config: DataConfig) -> LabelledImages:
    """``read`` with its images resized to ``data.image_size`` (when set; one size needed)."""
    if config.image_size:
        if len({tuple(i.shape) for i in read.images}) > 1:
            raise ConfigError("images differ in size")
        read.images = resize_images(read.images, config.image_size)
    return read


def _folder_class_names(config: DataConfig, found: list[str], path: Path) -> list[str]:
    """The class names of a folder: ``data.class_names`` (one per class found, in sorted order),
    else the subfolder (or CSV label) names when none of them looks identifying."""
    if config.class_names:
        if len(config.class_names) != len(found):
            raise ConfigError(
                f"data.class_names has {len(config.class_names)} class names but {path} has "
                f"{len(found)} classes; give one name per class, in the sorted order of the "
                "subfolder (or label) names"
            )
        return list(config.class_names)
    for name in found:
        reason = identifying_reason(name)
        if reason is not None:
            raise ConfigError(
                f"{path}: the class name {name!r} may identify a patient ({reason}) and class "
                f"names go into the model card; name the {len(found)} classes in the config "
                "instead: data.class_names: [...], one per class in the sorted order of the "
                "subfolder (or label) names"
            )
    return list(found)


def labelled_dataset(read: LabelledImages) -> tuple[LabeledImageDataset, DataInfo]:
    """Scale class-labelled images to [-1, 1] (an intensity map fitted on them) and describe
    them."""
    images, labels, class_names = read.images, read.labels, read.class_names
    if len(images) == 0:
        raise ConfigError("the training data holds no images")
    if int(labels.max()) >= len(class_names):
        raise ConfigError(
            f"labels go up to {int(labels.max())} but only {len(class_names)} class names are given"
        )
    intensity = fit_intensity_map([images], modality=read.modality, source_dtype=read.source_dtype)
    dataset = LabeledImageDataset(images, labels, intensity, class_names=class_names)
    info = DataInfo(
        channels=int(images.shape[1]),
        spatial_shape=tuple(int(s) for s in images.shape[2:]),
        class_names=class_names,
        class_counts=dataset.class_counts(),
        intensity_map=intensity,
        source_dtype=read.source_dtype,
        modality=read.modality,
        spacing=read.spacing,
        fingerprint=read.fingerprint,
        source=read.source,
    )
    log.info(
        "data: %d images %s, classes %s, counts %s",
        len(dataset),
        info.spatial_shape,
        class_names,
        info.class_counts,
    )
    return dataset, info


#: ``data.format`` -> its loader (the names ``DataConfig.format`` accepts, no more, no less)
DATA_FORMATS: dict[str, FormatLoader] = {
    "medmnist": load_medmnist,
    "folder": load_folder,
    "slices": load_slices,
    "mni152_views": load_mni152_views,
    "paired": load_pair_data,
    "unpaired": load_pair_data,
    "image_mask": load_image_mask_data,
}


def data_format_names() -> list[str]:
    """The registered ``data.format`` names, sorted."""
    return sorted(DATA_FORMATS)


def load_training_data(config: DataConfig) -> TrainingData:
    """Read the images ``config`` points at with the loader of ``config.format`` and describe
    them: the dataset (dict items in [-1, 1]) and its :class:`~medisynth.data.info.DataInfo`."""
    loader = DATA_FORMATS.get(config.format)
    if loader is None:
        raise ConfigError(
            f"unknown data.format {config.format!r}; known formats: "
            + ", ".join(data_format_names())
        )
    return loader(config)
