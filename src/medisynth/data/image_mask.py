"""Training data for mask -> image synthesis: the loader of ``data.format: image_mask``
(registered in :mod:`medisynth.data.formats`).

``path`` holds the images and ``mask_path`` their label maps (integer labels ``0..K-1``, or
0/255 binary masks): one file each, or two folders whose files pair up by sorted name, on one
grid. Items are ``{"source": one-hot label map (K, *S) in {-1, 1}, "target": image in [-1, 1]}``,
so the image-to-image families (pix2pix) train on them unchanged
(:class:`~medisynth.data.datasets.ImageMaskPairs`). ``data.patch_size`` crops a
fresh random patch per item (train at the stored resolution on large images); ``image_size``
resizes first (images bilinear, label maps nearest).

The :class:`~medisynth.data.info.DataInfo` records ``mask_labels = K`` and a pass-through
source map: the model package knows it takes label maps (:mod:`medisynth.apply.mask2image`).

>>> import numpy as np, tempfile, pathlib
>>> from medisynth.settings import DataConfig, expand_path
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
from pathlib import Path

import numpy as np
import torch

from medisynth.data.datasets import ImageMaskPairs
from medisynth.data.image import Image, images_fingerprint
from medisynth.data.info import DataInfo
from medisynth.data.intensity import IntensityMap, fit_intensity_map
from medisynth.data.io import read_images
from medisynth.data.masks import as_labels, check_mask_grid, mask_plane
from medisynth.data.resize import resize_images
from medisynth.errors import ConfigError
from medisynth.settings import DataConfig, expand_path

log = logging.getLogger(__name__)

_SUFFIXES = (".nii", ".nii.gz", ".mgh", ".mgz", ".png", ".tif", ".tiff", ".gif", ".bmp", ".npy")
#: the source map of a mask model: one-hot values are already in [-1, 1]
MASK_SOURCE_MAP = IntensityMap(-1.0, 1.0, kind="fixed", modality="mask", description="one-hot")


def read_files(path: Path, modality: str | None = None) -> list[Image]:
    """The images at ``path``: one file, or a folder's image files sorted by name."""
    return read_images(path, _SUFFIXES, modality)


def load_image_mask_data(config: DataConfig) -> tuple[ImageMaskPairs, DataInfo]:
    """Read ``config.path`` (images) and ``config.mask_path`` (label maps) into pairs."""
    if config.format != "image_mask":
        raise ConfigError(f"load_image_mask_data needs data.format image_mask, not {config.format}")
    if not config.mask_path:
        raise ConfigError("data.mask_path is required for data.format='image_mask'")
    images = read_files(config.resolved_path(), config.modality)
    mask_path = expand_path(config.mask_path)
    masks = read_files(mask_path)
    if len(images) != len(masks):
        raise ConfigError(
            f"image_mask data need one label map per image: {len(images)} images at "
            f"{config.path}, {len(masks)} masks at {mask_path}"
        )
    for image, mask in zip(images, masks, strict=True):
        check_mask_grid(image, mask)
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
        fingerprint=images_fingerprint(image=images, mask=masks),
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
