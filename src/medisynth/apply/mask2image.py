"""Synthetic image + mask pairs from a mask -> image model (``medisynth generate --masks``).

A mask -> image model is a translating family (``task = "translate"``, e.g. pix2pix) trained on
``data.format: image_mask`` (label maps in, images out). :func:`synthesise` applies it to label
maps of any size (fully convolutional: the one-hot map is edge-padded to a multiple of the
family's ``input_multiple``, ``2 ** g_depth`` for pix2pix, and the output cropped back), with
fresh noise per image when the model has ``noise_channels`` (a seed gives the same images).
:func:`generate_pairs` writes a dataset that ``medisynth validate --synthetic ...
--synthetic-masks ...`` and segmentation training read:

    npz:  OUT/synthetic.npz   train_images, train_masks (the label maps), train_labels (zeros)
    png:  OUT/images/synthetic_000001.png ...   OUT/masks/synthetic_000001.png (label values)
    both: OUT/generation.json (model id, seed, mask file names, transforms; written by
          :class:`medisynth.output_set.OutputSet`, "incomplete" until the last file is there)

``augment=True`` gives each image a new layout: a random flip per spatial axis and a random
quarter turn (square masks), and a smooth random elastic deformation of ``elastic`` pixels
(applied to the one-hot map, bilinear, then the most likely label per pixel), so the written
mask is exactly the layout the image was made from.

>>> import numpy as np
>>> labels = np.zeros((1, 8, 8), np.int64); labels[0, 2:4] = 1
>>> moved = transform_masks(labels, np.random.default_rng(0), elastic=0.0)
>>> moved.shape, int(moved.sum()) == int(labels.sum())
((1, 8, 8), True)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medisynth.apply.common import Model, generation_record, open_package
from medisynth.data.image_mask import mask_plane, read_files
from medisynth.data.masks import as_labels, one_hot
from medisynth.errors import ConfigError
from medisynth.gans import families_for
from medisynth.gans.base import GANFamily
from medisynth.output_set import OutputSet, output_dtype
from medisynth.package import ModelPackage

log = logging.getLogger(__name__)

PAIR_FORMATS = ("npz", "png")


@dataclass
class PairsResult:
    """What :func:`generate_pairs` wrote."""

    out_dir: str
    format: str
    count: int
    files: list[str] = field(default_factory=list)


def mask_family(package: ModelPackage) -> GANFamily:
    """The package's family, checked to translate label maps into images."""
    if not package.data.mask_labels or package.family.task != "translate":
        makers = " or ".join(families_for(task="translate", data_format="image_mask"))
        raise ConfigError(
            f"{package.path} is not a mask -> image model (train {makers} on "
            "data.format: image_mask); --masks needs one"
        )
    return package.family


def synthesise(
    package: ModelPackage,
    labels: np.ndarray,
    generator: torch.Generator | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """Images ``(N, C, *S)`` in the training images' units from label maps ``(N, *S)``.

    Sizes need not be the training size; each call draws new noise (from ``generator``).
    """
    family = mask_family(package)
    labels = np.asarray(labels)
    if labels.ndim != 1 + package.data.spatial_dims:
        raise ConfigError(
            f"a {package.data.spatial_dims}D model takes label maps (N, "
            f"{', '.join('?' * package.data.spatial_dims)}), got {labels.shape}"
        )
    assert package.data.mask_labels is not None
    source = one_hot(labels, package.data.mask_labels)
    multiple = family.input_multiple
    spatial = tuple(source.shape[2:])
    pads: list[int] = []
    for side in reversed(spatial):  # F.pad wants the last axis first
        extra = -side % multiple
        pads += [extra // 2, extra - extra // 2]
    if any(pads):
        source = F.pad(source, pads, mode="replicate")
    out = family.translate(source, batch_size, generator=generator)
    crop = tuple(
        slice(pads[2 * i], pads[2 * i] + side) for i, side in enumerate(reversed(spatial))
    )[::-1]
    values = out[(slice(None), slice(None), *crop)].numpy()
    return package.to_source_units(values)


def transform_masks(
    labels: np.ndarray, rng: np.random.Generator, elastic: float = 8.0, grid: int = 4
) -> np.ndarray:
    """New layouts from label maps ``(N, *S)``: random flips, quarter turns (when square) and an
    elastic deformation of about ``elastic`` pixels (a random ``grid``-point displacement field,
    smoothly upsampled; 0 = none)."""
    out = []
    for item in np.asarray(labels):
        for axis in range(item.ndim):
            if rng.random() < 0.5:
                item = np.flip(item, axis)
        if item.shape[-1] == item.shape[-2]:
            item = np.rot90(item, int(rng.integers(4)), axes=(-2, -1))
        out.append(np.ascontiguousarray(item))
    moved = np.stack(out)
    if elastic <= 0:
        return moved
    k = int(moved.max()) + 1
    dims = moved.ndim - 1
    source = (one_hot(moved, k) + 1) / 2  # (N, k, *S) in {0, 1}
    n, spatial = len(moved), moved.shape[1:]
    coarse = torch.from_numpy(rng.normal(0, 1, (n, dims, *(grid,) * dims)).astype(np.float32))
    mode = "bicubic" if dims == 2 else "trilinear"
    field_px = F.interpolate(coarse, size=spatial, mode=mode, align_corners=True) * elastic
    axes = [torch.linspace(-1, 1, s) for s in spatial]
    base = torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], -1)  # x, y(, z) order
    scale = torch.tensor([2.0 / max(s - 1, 1) for s in reversed(spatial)])
    shift = field_px.movedim(1, -1).flip(-1) * scale
    warped = F.grid_sample(
        source, base + shift, mode="bilinear", padding_mode="border", align_corners=True
    )
    return warped.argmax(1).numpy().astype(np.int64)


def read_label_maps(path: str | os.PathLike[str]) -> tuple[list[np.ndarray], list[str]]:
    """Label maps (each ``(*S)`` int64) and their names from a mask file or folder."""
    images = read_files(Path(path))
    maps = [as_labels(mask_plane(image), str(image.path)) for image in images]
    return maps, [Path(str(image.path)).name for image in images]


def generate_pairs(
    model: Model,
    masks: str | os.PathLike[str],
    out: str | os.PathLike[str],
    n: int | None = None,
    fmt: str = "npz",
    seed: int = 0,
    augment: bool = False,
    elastic: float = 8.0,
    overwrite: bool = False,
) -> PairsResult:
    """Write ``n`` synthetic images with their label maps (default: one per mask).

    Mask ``i % len(masks)`` drives image ``i``; with ``augment`` each image gets its own
    transformed copy of the mask (see :func:`transform_masks`), else several images of one mask
    differ only by their noise.
    """
    if fmt not in PAIR_FORMATS:
        raise ConfigError(f"unknown format {fmt!r} for image + mask pairs; use npz or png")
    if n is not None and n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    package = open_package(model)
    mask_family(package)
    maps, names = read_label_maps(masks)
    total = n if n is not None else len(maps)
    if fmt == "npz" and len({m.shape for m in maps}) > 1:
        raise ConfigError(f"{masks}: the masks differ in size; npz needs one size (use png)")
    if fmt == "png" and package.data.spatial_dims != 2:
        raise ConfigError("png holds 2D images; use npz for a 3D model")
    width = max(6, len(str(total)))
    stems = [f"synthetic_{index:0{width}d}.png" for index in range(1, total + 1)]
    if fmt == "npz":
        files = ["synthetic.npz"]
    else:
        files = [f"{folder}/{stem}" for stem in stems for folder in ("images", "masks")]
    with OutputSet.begin(out, files, overwrite=overwrite) as output:
        rng = np.random.default_rng(seed)
        noise = torch.Generator().manual_seed(seed)
        images, layouts = [], []
        for index in range(total):
            layout = maps[index % len(maps)][None]
            if augment:
                layout = transform_masks(layout, rng, elastic)
            images.append(synthesise(package, layout, noise)[0])
            layouts.append(layout[0])
        _write_pairs(package, fmt, output, files, stems, images, layouts)
        result = PairsResult(str(output.folder), fmt, total, files)
        augmented = {"flips_quarter_turns": augment, "elastic_px": elastic if augment else 0}
        record = generation_record(
            package,
            seed,
            mask_files=names,
            mask_labels=package.data.mask_labels,
            augment=augmented,
        )
        output.complete({"format": fmt, "count": total, "files": files, **record})
    log.info("wrote %d synthetic image + mask pairs (%s) to %s", total, fmt, out)
    return result


def _write_pairs(
    package: ModelPackage,
    fmt: str,
    output: OutputSet,
    files: Sequence[str],
    stems: Sequence[str],
    images: Sequence[np.ndarray],
    layouts: Sequence[np.ndarray],
) -> None:
    """Write the images and their label maps of one set (npz, or PNG pairs)."""
    data = package.data
    if fmt == "npz":
        from medisynth.export.npz import write_medmnist_npz

        write_medmnist_npz(
            output.path(files[0]),
            np.stack(images),
            np.zeros(len(images), np.int64),
            dtype=output_dtype(data.source_dtype),
            masks=np.stack(layouts).astype(np.uint8),
        )
        return
    from medisynth.export.png import PngStorage, png_storage, write_png

    storage = png_storage(data.source_dtype, data.intensity_map.low, data.intensity_map.high)
    for stem, image, layout in zip(stems, images, layouts, strict=True):
        write_png(output.path(f"images/{stem}"), image, storage=storage)
        write_png(output.path(f"masks/{stem}"), layout[None], storage=PngStorage("uint8"))
