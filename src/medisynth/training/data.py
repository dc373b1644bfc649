"""Training data for the engine: a dataset of dict items plus the :class:`DataInfo` that travels
with the model, and a resumable, shardable batch order.

>>> sampler = EpochBatchSampler(10, batch_size=4, seed=0)
>>> first = [b for _, b in zip(range(3), sampler)]
>>> resumed = EpochBatchSampler(10, batch_size=4, seed=0, start_batch=2)
>>> next(iter(resumed)) == first[2]
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from medisynth.config import DataConfig
from medisynth.data.datasets import LabeledImageDataset
from medisynth.data.intensity import fit_intensity_map
from medisynth.data.privacy import identifying_reason
from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo

log = logging.getLogger(__name__)


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


def _read_files(
    config: DataConfig,
) -> tuple[np.ndarray, np.ndarray, list[str], str, str, str, str, tuple[float, ...] | None]:
    """Images, labels and provenance for ``folder`` and ``slices`` data.

    The source description names the format, the file count and the modality but not the path:
    a folder of patient data is often named after the patient, and the model package must carry
    no identifiers. For the same reason class names taken from subfolder names (or a label
    CSV) are checked (:mod:`medisynth.data.privacy`) unless ``data.class_names`` gives them.
    """
    from medisynth.data.datasets import slice_indices
    from medisynth.data.io import read_image, read_image_folder

    path = config.resolved_path()
    if config.format == "folder":
        folder = read_image_folder(path, labels=config.labels, modality=config.modality)
        images, labels = folder.images, folder.labels
        names = _folder_class_names(config, folder.class_names, path)
        modality = folder.modality
        source = (
            f"image folder: {len(folder.files)} files, {len(images)} images, "
            f"{len(names)} class{'es' if len(names) != 1 else ''}"
        )
        spacing = folder.spacing
        source_dtype, fingerprint = folder.source_dtype, folder.fingerprint
    else:
        volume = read_image(path, modality=config.modality)
        if volume.ndim != 3:
            raise ConfigError(f"{path}: data.format 'slices' needs a 3D volume")
        moved = np.moveaxis(volume.array, config.axis + 1, 1)
        keep = slice_indices(volume, config.axis, config.min_foreground)
        if not keep:
            raise ConfigError(
                f"{path}: no slice has {config.min_foreground:.0%} foreground; "
                "lower data.min_foreground"
            )
        images = np.ascontiguousarray(np.moveaxis(moved[:, keep], 1, 0))
        labels = np.zeros(len(images), np.int64)
        names = list(config.class_names or ["slice"])
        modality = volume.modality
        files = int(volume.meta.get("files", 1))
        source = (
            f"{len(images)} slices (axis {config.axis}) of a {volume.meta.get('format', '')} "
            f"volume {volume.spatial_shape} ({files} file{'s' if files != 1 else ''})"
        )
        plane = [s for i, s in enumerate(volume.spacing) if i != config.axis]
        spacing = (float(plane[0]), float(plane[1]))
        source_dtype, fingerprint = volume.source_dtype, volume.fingerprint
    if config.image_size:
        if len({tuple(i.shape) for i in images}) > 1:
            raise ConfigError("images differ in size")
        images = resize_images(images, config.image_size)
    return images, labels, names, source_dtype, modality, fingerprint, source, spacing


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


def load_training_data(config: DataConfig) -> tuple[LabeledImageDataset, DataInfo]:
    """Read the images ``config`` points at and describe them.

    Returns the dataset (items ``{"image", "label"}`` in [-1, 1]) and its :class:`DataInfo`
    (shape, classes and their counts, intensity map, fingerprint).
    """
    if config.format in ("paired", "unpaired"):  # image-to-image data: {"source", "target"}
        from medisynth.training.pairs import load_pair_data

        return load_pair_data(config)  # type: ignore[return-value]
    if config.format == "image_mask":  # mask -> image: {"source": one-hot mask, "target"}
        from medisynth.training.masks import load_image_mask_data

        return load_image_mask_data(config)  # type: ignore[return-value]
    spacing: tuple[float, ...] | None
    if config.format == "mni152_views":
        from medisynth.demo import mni152_views

        views = mni152_views(config.image_size or 64)
        images, labels = views.images, views.labels
        class_names = list(config.class_names or views.class_names)
        source_dtype, fingerprint = "uint8", views.fingerprint
        modality = (config.modality or "MR").upper()  # the MNI152 T1 template
        source, spacing = views.source, views.spacing
    elif config.format in ("folder", "slices"):
        images, labels, class_names, source_dtype, modality, fingerprint, source, spacing = (
            _read_files(config)
        )
    else:
        from medisynth.data.io import read_medmnist

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
        class_names = list(config.class_names or [str(i) for i in range(n_classes)])
        source_dtype, modality, fingerprint = (
            arrays.source_dtype,
            (config.modality or arrays.modality).upper(),
            arrays.fingerprint,
        )
        source = f"MedMNIST npz (1 file), split {config.split!r}: {len(images)} images"
        spacing = None
    if len(images) == 0:
        raise ConfigError("the training data holds no images")
    if int(labels.max()) >= len(class_names):
        raise ConfigError(
            f"labels go up to {int(labels.max())} but only {len(class_names)} class names are given"
        )
    intensity = fit_intensity_map([images], modality=modality, source_dtype=source_dtype)
    dataset = LabeledImageDataset(images, labels, intensity, class_names=class_names)
    info = DataInfo(
        channels=int(images.shape[1]),
        spatial_shape=tuple(int(s) for s in images.shape[2:]),
        class_names=class_names,
        class_counts=dataset.class_counts(),
        intensity_map=intensity,
        source_dtype=source_dtype,
        modality=modality,
        spacing=spacing,
        fingerprint=fingerprint,
        source=source,
    )
    log.info(
        "data: %d images %s, classes %s, counts %s",
        len(dataset),
        info.spatial_shape,
        class_names,
        info.class_counts,
    )
    return dataset, info


def class_balanced_weights(labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Sampling weights that draw every class equally often (1 / the size of its class).

    >>> class_balanced_weights([0, 0, 0, 1]).tolist()
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 1.0]
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    counts = torch.bincount(labels).to(torch.float64)
    return 1.0 / counts[labels]


class EpochBatchSampler(Sampler[list[int]]):
    """Endless batches of indices: a fresh permutation each epoch, seeded by ``(seed, epoch)``.

    The order depends only on ``seed`` and the batch number, so a run resumed at batch ``k``
    (``start_batch=k``) sees exactly the batches an uninterrupted run would. With several
    processes each takes every ``world_size``-th batch of the same global order. Incomplete
    batches at the end of an epoch are dropped.

    With ``weights`` (one per item) an epoch is ``num_items`` draws with replacement in
    proportion to them instead of a permutation (see :func:`class_balanced_weights`).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        weights: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        global_batch = batch_size * world_size
        if num_items < global_batch:
            raise ConfigError(
                f"the dataset has {num_items} images, fewer than one batch of {global_batch} "
                f"(train.batch_size={batch_size} x {world_size} processes); lower train.batch_size"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch
        self.batches_per_epoch = num_items // global_batch
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and self.weights.shape != (num_items,):
            raise ConfigError(f"need one sampling weight per item ({num_items})")

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_batch
        while True:
            epoch, position = divmod(step, self.batches_per_epoch)
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            if self.weights is None:
                order = torch.randperm(self.num_items, generator=generator)
            else:
                order = torch.multinomial(
                    self.weights, self.num_items, replacement=True, generator=generator
                )
            start = (position * self.world_size + self.rank) * self.batch_size
            yield order[start : start + self.batch_size].tolist()
            step += 1

    def __len__(self) -> int:  # batches per epoch (the iterator itself never ends)
        return self.batches_per_epoch
