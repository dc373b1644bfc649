"""Training data for mask -> image synthesis: ``data.format: image_mask``.

``path`` holds the images and ``mask_path`` their label maps (integer labels ``0..K-1``, or
0/255 binary masks): one file each, or two folders whose files pair up by sorted name, on one
grid. Items are ``{"source": one-hot label map (K, *S) in {-1, 1}, "target": image in [-1, 1]}``,
so the image-to-image families (pix2pix) train on them unchanged. ``data.patch_size`` crops a
fresh random patch per item (train at the stored resolution on large images); ``image_size``
resizes first (images bilinear, label maps nearest).

The :class:`~medisynth.gans.base.DataInfo` records ``mask_labels = K`` and a pass-through
source map: the model package knows it takes label maps (:mod:`medisynth.mask2image`).

>>> import numpy as np, tempfile, pathlib
>>> from medisynth.config import DataConfig
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> np.save(folder / "image.npy", np.random.default_rng(0).random((1, 16, 16), np.float32))
>>> np.save(folder / "mask.npy", (np.arange(256).reshape(1, 16, 16) % 3).astype(np.float32))
>>> cfg = DataConfig(format="image_mask", path=str(folder / "image.npy"),
...                  mask_path=str(folder / "mask.npy"), patch_size=8)
>>> dataset, info = load_image_mask_data(cfg)
>>> dataset[0]["source"].shape, dataset[0]["target"].shape, info.mask_labels
(torch.Size([3, 8, 8]), torch.Size([1, 8, 8]), 3)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medisynth.config import DataConfig
from medisynth.data.image import Image, combine_fingerprints
from medisynth.data.intensity import IntensityMap, fit_intensity_map
from medisynth.data.masks import as_labels, one_hot
from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo

log = logging.getLogger(__name__)

_SUFFIXES = (".nii", ".nii.gz", ".mgh", ".mgz", ".png", ".tif", ".tiff", ".gif", ".bmp", ".npy")
#: the source map of a mask model: one-hot values are already in [-1, 1]
MASK_SOURCE_MAP = IntensityMap(-1.0, 1.0, kind="fixed", modality="mask", description="one-hot")
#: how many patches make one pass over the data (an "epoch") per image when cropping
PATCHES_PER_IMAGE = 16


def read_files(path: Path, modality: str | None = None) -> list[Image]:
    """The images at ``path``: one file, or a folder's image files sorted by name."""
    from medisynth.data.io import files_with_suffixes, read_image

    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if path.is_dir():
        files = files_with_suffixes(path, _SUFFIXES)
        if not files:
            raise ConfigError(f"{path}: no image files")
        return [read_image(p, modality=modality) for p in files]
    return [read_image(path, modality=modality)]


def mask_plane(mask: Image) -> np.ndarray:
    """The one channel of a mask image (a grey mask saved as RGB, e.g. a palette GIF, has three
    equal channels); a ConfigError for a colour image."""
    array = mask.array
    if array.shape[0] > 1 and all(np.array_equal(array[0], a) for a in array[1:]):
        array = array[:1]
    if array.shape[0] != 1:
        raise ConfigError(
            f"mask {mask.path} has {array.shape[0]} different channels; a label map has one"
        )
    return array[0]


class ImageMaskPairs(Dataset[dict[str, torch.Tensor]]):
    """Images ``(N, C, *S)`` in [-1, 1] with label maps ``(N, *S)``; items one-hot encode the
    map as ``source`` and give the image as ``target``. With ``patch_size`` each item is a random
    crop (global torch RNG, seeded by the engine) and the dataset counts
    ``PATCHES_PER_IMAGE`` items per image."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        num_labels: int,
        patch_size: int | None = None,
    ) -> None:
        if images.shape[0] != labels.shape[0] or images.shape[2:] != labels.shape[1:]:
            raise ConfigError(
                f"images {tuple(images.shape)} and label maps {tuple(labels.shape)} do not match"
            )
        if patch_size is not None and any(s < patch_size for s in labels.shape[1:]):
            raise ConfigError(
                f"data.patch_size {patch_size} is larger than the images {tuple(labels.shape[1:])}"
            )
        self.images, self.labels = images, labels
        self.num_labels, self.patch_size = num_labels, patch_size

    def __len__(self) -> int:
        return len(self.images) * (PATCHES_PER_IMAGE if self.patch_size else 1)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index %= len(self.images)
        image, labels = self.images[index], self.labels[index]
        if self.patch_size:
            corner = [int(torch.randint(s - self.patch_size + 1, (1,))) for s in labels.shape]
            window = tuple(slice(c, c + self.patch_size) for c in corner)
            image, labels = image[(slice(None), *window)], labels[window]
        return {"source": one_hot(labels[None], self.num_labels)[0], "target": image}


def load_image_mask_data(config: DataConfig) -> tuple[ImageMaskPairs, DataInfo]:
    """Read ``config.path`` (images) and ``config.mask_path`` (label maps) into pairs."""
    if config.format != "image_mask":
        raise ConfigError(f"load_image_mask_data needs data.format image_mask, not {config.format}")
    if not config.mask_path:
        raise ConfigError("data.mask_path is required for data.format='image_mask'")
    images = read_files(config.resolved_path(), config.modality)
    mask_path = Path(os.path.expandvars(os.path.expanduser(config.mask_path)))
    masks = read_files(mask_path)
    if len(images) != len(masks):
        raise ConfigError(
            f"image_mask data need one label map per image: {len(images)} images at "
            f"{config.path}, {len(masks)} masks at {mask_path}"
        )
    for image, mask in zip(images, masks, strict=True):
        if image.spatial_shape != mask.spatial_shape:
            raise ConfigError(
                f"mask {mask.path} {mask.spatial_shape} does not fit image {image.path} "
                f"{image.spatial_shape}: label maps must be on the images' grid"
            )
    if len({img.array.shape for img in images}) > 1 and not config.image_size:
        raise ConfigError("the images differ in size; set data.image_size")
    labels = [as_labels(mask_plane(m), str(m.path)) for m in masks]
    num_labels = max(2, max(int(lab.max()) for lab in labels) + 1)
    first = images[0]
    target_map = fit_intensity_map(
        [img.array for img in images], first.modality, first.source_dtype
    )
    image_t = [torch.from_numpy(target_map.forward(img.array).astype(np.float32)) for img in images]
    label_t = [torch.from_numpy(lab) for lab in labels]
    if config.image_size:
        from medisynth.training.data import resize_images

        size = (config.image_size,) * first.ndim
        image_t = [
            torch.from_numpy(resize_images(t[None].numpy(), config.image_size)[0]).clamp(-1, 1)
            for t in image_t
        ]
        label_t = [
            torch.nn.functional.interpolate(t[None, None].float(), size=size, mode="nearest")[0, 0]
            .round()
            .long()
            for t in label_t
        ]
    dataset = ImageMaskPairs(
        torch.stack(image_t), torch.stack(label_t), num_labels, config.patch_size
    )
    shape = dataset.labels.shape[1:]
    spatial = (config.patch_size,) * len(shape) if config.patch_size else tuple(shape)
    counts = np.bincount(dataset.labels.numpy().ravel(), minlength=num_labels)
    info = DataInfo(
        channels=int(dataset.images.shape[1]),
        spatial_shape=tuple(int(s) for s in spatial),
        class_names=["pair"],
        class_counts={0: len(images)},
        intensity_map=target_map,
        source_dtype=first.source_dtype,
        modality=first.modality,
        spacing=None if config.image_size else tuple(first.spacing),
        fingerprint=combine_fingerprints(
            [(f"image{i}", img.fingerprint) for i, img in enumerate(images)]
            + [(f"mask{i}", m.fingerprint) for i, m in enumerate(masks)]
        ),
        source=(
            f"image_mask data: {len(images)} images {tuple(shape)} with label maps of "
            f"{num_labels} labels (pixel fractions "
            + ", ".join(f"{c / counts.sum():.3f}" for c in counts)
            + ")"
            + (f", random {config.patch_size}-pixel patches" if config.patch_size else "")
        ),
        source_intensity_map=MASK_SOURCE_MAP,
        source_channels=num_labels,
        mask_labels=num_labels,
    )
    log.info("data: %s", info.source)
    return dataset, info
