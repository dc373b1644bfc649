"""torch Datasets over medisynth images. Every item is a dict of tensors in [-1, 1].

* :class:`LabeledImageDataset`: same-sized 2D images (or 3D volumes) with class labels,
  ``{"image", "label"}``; from arrays, a MedMNIST npz or an image folder.
* :class:`SliceDataset`: 2D slices of volumes along a chosen axis, optionally skipping empty
  slices, ``{"image", "label"}`` (label = index of the source volume).
* :class:`PairedDataset`: co-registered pairs (two contrasts, low/high resolution),
  ``{"source", "target"}``, whole images or slices.
* :class:`UnpairedDataset`: two domains drawn independently (CycleGAN), ``{"source", "target"}``.
* :class:`ImageMaskDataset`: images with segmentation masks, ``{"image", "mask"}``.
* :class:`ImageMaskPairs`: mask -> image training pairs, ``{"source": one-hot label map,
  "target": image}``, whole or as random patches.
* :class:`VolumeDataset`: 3D volumes resampled to one grid (MONAI transforms),
  ``{"image", "label"}``.

The loaders of :mod:`medisynth.data.formats` build the training datasets from these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medisynth.data.histogram import HistogramPrior, PriorKind
from medisynth.data.image import Image, LabeledArrays
from medisynth.data.intensity import IntensityMap, fit_intensity_map, foreground_mask
from medisynth.data.io import ImageFolder
from medisynth.data.masks import check_mask_grid, one_hot
from medisynth.errors import ConfigError

Item = dict[str, torch.Tensor]
#: how many patches make one pass over the data (an "epoch") per image when cropping
PATCHES_PER_IMAGE = 16


class LabeledImageDataset(Dataset[dict[str, torch.Tensor]]):
    """Images ``(N, C, *spatial)`` and integer labels, scaled to [-1, 1] by an intensity map.

    Items are ``{"image": float32 (C, *spatial) in [-1, 1], "label": int64 scalar}``.

    >>> import numpy as np
    >>> from medisynth.data.intensity import IntensityMap
    >>> ds = LabeledImageDataset(np.full((2, 1, 4, 4), 255.0, np.float32), [0, 1],
    ...                          IntensityMap.integer_range("uint8"))
    >>> ds[1]["image"].max().item(), ds[1]["label"].item()
    (1.0, 1)
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray | None,
        intensity_map: IntensityMap,
        class_names: Sequence[str] | None = None,
    ) -> None:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim not in (4, 5):
            raise ConfigError(f"images must be (N, C, H, W) or (N, C, D, H, W), got {images.shape}")
        label_array = (
            np.zeros(len(images), np.int64) if labels is None else np.asarray(labels, np.int64)
        )
        if label_array.ndim != 1 or len(label_array) != len(images):
            raise ConfigError(
                f"need one integer label per image: {len(images)} images, "
                f"labels {label_array.shape}"
            )
        self.images = torch.from_numpy(intensity_map.forward(images).astype(np.float32))
        self.labels = torch.from_numpy(label_array)
        self.intensity_map = intensity_map
        n_classes = int(label_array.max()) + 1 if len(label_array) else 0
        self.class_names = list(class_names) if class_names else [str(i) for i in range(n_classes)]

    @classmethod
    def from_medmnist(
        cls, data: LabeledArrays, split: str = "train", intensity_map: IntensityMap | None = None
    ) -> LabeledImageDataset:
        """One split of a MedMNIST-style collection (single-label tasks)."""
        if split not in data.images:
            raise ConfigError(f"split {split!r} not in {data.path}; available: {data.splits}")
        labels = data.labels[split]
        if labels.ndim != 1:
            raise ConfigError(
                f"{data.path}: split {split!r} is multi-label {labels.shape}; "
                "class-conditional datasets need one label per image"
            )
        if intensity_map is None:
            intensity_map = fit_intensity_map(
                [data.images[split]], modality=data.modality, source_dtype=data.source_dtype
            )
        return cls(data.images[split], labels, intensity_map)

    @classmethod
    def from_folder(
        cls, folder: ImageFolder, intensity_map: IntensityMap | None = None
    ) -> LabeledImageDataset:
        """A dataset over an :class:`~medisynth.data.io.ImageFolder`."""
        if intensity_map is None:
            intensity_map = fit_intensity_map(
                [folder.images], modality=folder.modality, source_dtype=folder.source_dtype
            )
        return cls(folder.images, folder.labels, intensity_map, folder.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> dict[int, int]:
        values, counts = np.unique(self.labels.numpy(), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def _fit_for(images: Sequence[Image], intensity_map: IntensityMap | None) -> IntensityMap:
    if intensity_map is not None:
        return intensity_map
    first = images[0]
    return fit_intensity_map(
        [img.array for img in images], modality=first.modality, source_dtype=first.source_dtype
    )


def _check_volumes(images: Sequence[Image], what: str) -> None:
    if not images:
        raise ConfigError(f"{what}: no images given")
    for img in images:
        if img.ndim != 3:
            raise ConfigError(
                f"{what}: {img.path or 'an image'} is {img.ndim}D {img.array.shape}; volumes needed"
            )


def _fit_plane(plane: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Centre-crop or pad (with the slice minimum) a (C, H, W) slice to ``size``."""
    if size is None or plane.shape[1:] == tuple(size):
        return plane
    from monai.transforms import ResizeWithPadOrCrop

    fit = ResizeWithPadOrCrop(spatial_size=size, mode="constant", value=float(plane.min()))
    return np.asarray(fit(torch.from_numpy(np.ascontiguousarray(plane))))


def slice_indices(
    volume: Image, axis: int, min_foreground: float = 0.0, background: float | None = None
) -> list[int]:
    """Indices of the slices along spatial ``axis`` whose foreground fraction (pixels above
    ``background``, by default :func:`~medisynth.data.intensity.background_level` of the
    volume, in any channel) is at least
    ``min_foreground`` (every slice when it is 0)."""
    if axis not in (0, 1, 2):
        raise ConfigError(f"slice axis must be 0, 1 or 2, got {axis}")
    count = volume.array.shape[axis + 1]
    if min_foreground <= 0:
        return list(range(count))
    mask = np.moveaxis(foreground_mask(volume.array, background), axis, 0)
    fractions = mask.mean(axis=(1, 2))
    return [int(i) for i in np.flatnonzero(fractions >= min_foreground)]


def volume_slices(
    volume: Image, axis: int, min_foreground: float = 0.0
) -> tuple[list[int], np.ndarray]:
    """The slices along spatial ``axis`` that :func:`slice_indices` keeps: their indices and the
    slices themselves, ``(N, C, H, W)`` (contiguous).

    >>> vol = Image(np.zeros((1, 3, 4, 5), np.float32), spacing=(1, 1, 1))
    >>> kept, planes = volume_slices(vol, axis=0)
    >>> kept, planes.shape
    ([0, 1, 2], (3, 1, 4, 5))
    """
    kept = slice_indices(volume, axis, min_foreground)
    moved = np.moveaxis(volume.array, axis + 1, 1)
    return kept, np.ascontiguousarray(np.moveaxis(moved[:, kept], 1, 0))


class SliceDataset(Dataset[Item]):
    """2D slices of 3D volumes along one spatial axis.

    Items are ``{"image": (C, H, W) in [-1, 1], "label": index of the source volume}``.

    Args:
        volumes: 3D images.
        axis: spatial axis to slice along (0, 1 or 2 of the array's spatial axes).
        min_foreground: skip slices whose fraction of non-background pixels is below this
            (0 keeps every slice; e.g. 0.1 keeps slices that are at least 10% anatomy).
        size: crop/pad every slice to ``(H, W)``; needed when volumes differ in size.
        intensity_map: fitted on all volumes when not given.
    """

    def __init__(
        self,
        volumes: Sequence[Image],
        axis: int = 2,
        min_foreground: float = 0.0,
        size: tuple[int, int] | None = None,
        intensity_map: IntensityMap | None = None,
    ) -> None:
        _check_volumes(volumes, "SliceDataset")
        self.intensity_map = _fit_for(volumes, intensity_map)
        self.axis = axis
        planes: list[np.ndarray] = []
        labels: list[int] = []
        self.origin: list[tuple[int, int]] = []
        for v_index, volume in enumerate(volumes):
            kept, slices = volume_slices(volume, axis, min_foreground)
            for s_index, plane in zip(kept, slices, strict=True):
                planes.append(_fit_plane(plane, size))
                labels.append(v_index)
                self.origin.append((v_index, s_index))
        if not planes:
            raise ConfigError(
                f"no slice has at least {min_foreground:.0%} foreground; lower min_foreground"
            )
        shapes = {p.shape for p in planes}
        if len(shapes) > 1:
            raise ConfigError(
                f"slices differ in size {sorted(shapes)}; give size=(H, W) to crop/pad them"
            )
        stacked = np.stack(planes).astype(np.float32)
        self.images = torch.from_numpy(self.intensity_map.forward(stacked).astype(np.float32))
        self.labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Item:
        return {"image": self.images[index], "label": self.labels[index]}


def _check_pair(a: Image, b: Image, what: str, atol_mm: float = 1e-3) -> None:
    if a.spatial_shape != b.spatial_shape:
        raise ConfigError(
            f"{what}: {a.path} {a.spatial_shape} and {b.path} {b.spatial_shape} differ in size; "
            "co-register and resample them to one grid first"
        )
    if not np.allclose(a.affine, b.affine, atol=atol_mm):
        raise ConfigError(
            f"{what}: {a.path} and {b.path} have different affines (not on one grid); "
            "co-register them first"
        )


class PairedDataset(Dataset[Item]):
    """Co-registered image pairs (e.g. T1 -> T2, low -> high resolution).

    Items are ``{"source": (C, ...), "target": (C, ...)}`` in [-1, 1], each side with its own
    intensity map. With ``axis`` set, volumes are cut into paired 2D slices, skipping slices
    where the source's foreground is below ``min_foreground``. With ``prior`` other than
    ``"none"``, items also hold ``"prior"``: the source histogram-matched to the targets, per
    image or volume (:class:`~medisynth.data.histogram.HistogramPrior`, kept as ``.prior``).
    """

    def __init__(
        self,
        sources: Sequence[Image],
        targets: Sequence[Image],
        axis: int | None = None,
        min_foreground: float = 0.0,
        source_map: IntensityMap | None = None,
        target_map: IntensityMap | None = None,
        prior: PriorKind = "none",
    ) -> None:
        if len(sources) != len(targets) or not sources:
            raise ConfigError(
                "PairedDataset needs as many sources as targets, "
                f"got {len(sources)} and {len(targets)}"
            )
        for a, b in zip(sources, targets, strict=True):
            _check_pair(a, b, "PairedDataset")
        self.source_map = _fit_for(sources, source_map)
        self.target_map = _fit_for(targets, target_map)
        scaled_sources = [self.source_map.forward(a.array).astype(np.float32) for a in sources]
        scaled_targets = [self.target_map.forward(b.array).astype(np.float32) for b in targets]
        self.prior: HistogramPrior | None = None
        priors: list[np.ndarray] = []
        if prior != "none":
            if sources[0].array.shape[0] != 1 or targets[0].array.shape[0] != 1:
                raise ConfigError("data.source_prior needs single-channel sources and targets")
            masks = [foreground_mask(a.array) for a in sources]
            self.prior = HistogramPrior.fit(scaled_sources, scaled_targets, masks, prior)
            priors = [self.prior.apply(x, m) for x, m in zip(scaled_sources, masks, strict=True)]
        src, tgt, pri = [], [], []
        for i, a in enumerate(sources):
            arrays = [scaled_sources[i], scaled_targets[i]] + priors[i : i + 1]
            if axis is None:
                kept = [arrays]
            else:
                _check_volumes([a, targets[i]], "PairedDataset with axis")
                moved = [np.moveaxis(x, axis + 1, 1) for x in arrays]
                kept = [
                    [x[:, index] for x in moved] for index in slice_indices(a, axis, min_foreground)
                ]
            for item in kept:
                src.append(item[0])
                tgt.append(item[1])
                pri.extend(item[2:])
        if not src:
            raise ConfigError("no paired slice passed min_foreground; lower it")
        self.sources = torch.from_numpy(np.stack(src))
        self.targets = torch.from_numpy(np.stack(tgt))
        self.priors = torch.from_numpy(np.stack(pri)) if pri else None

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Item:
        item = {"source": self.sources[index], "target": self.targets[index]}
        if self.priors is not None:
            item["prior"] = self.priors[index]
        return item


class UnpairedDataset(Dataset[Item]):
    """Sources and targets drawn independently: item ``i`` is source ``i`` (modulo their count)
    with a target drawn from the global torch RNG (seeded by the engine).

    >>> data = UnpairedDataset(torch.zeros(3, 1, 4, 4), torch.ones(2, 1, 4, 4))
    >>> len(data), data[0]["target"].mean().item()
    (3, 1.0)
    """

    def __init__(self, sources: torch.Tensor, targets: torch.Tensor) -> None:
        if not len(sources) or not len(targets):
            raise ConfigError("unpaired data need at least one source and one target image")
        self.sources, self.targets = sources, targets

    def __len__(self) -> int:
        return max(len(self.sources), len(self.targets))

    def __getitem__(self, index: int) -> Item:
        j = int(torch.randint(len(self.targets), (1,)))
        return {"source": self.sources[index % len(self.sources)], "target": self.targets[j]}


class ImageMaskDataset(Dataset[Item]):
    """Images with their segmentation masks (label maps of the same grid).

    Items are ``{"image": (C, ...) in [-1, 1], "mask": int64 (...)}``. Masks stored as 0/255
    (PNG, GIF) become 0/1.
    """

    def __init__(
        self,
        images: Sequence[Image],
        masks: Sequence[Image],
        intensity_map: IntensityMap | None = None,
    ) -> None:
        if len(images) != len(masks) or not images:
            raise ConfigError(
                f"ImageMaskDataset needs one mask per image, got {len(images)} and {len(masks)}"
            )
        for img, mask in zip(images, masks, strict=True):
            check_mask_grid(img, mask)
            if mask.channels != 1:
                raise ConfigError(f"mask {mask.path} has {mask.channels} channels; need 1")
        self.intensity_map = _fit_for(images, intensity_map)
        self.images = torch.from_numpy(
            self.intensity_map.forward(np.stack([i.array for i in images])).astype(np.float32)
        )
        mask_values = np.stack([m.array[0] for m in masks])
        if set(np.unique(mask_values).tolist()) <= {0.0, 255.0}:
            mask_values = mask_values / 255.0
        if not np.allclose(mask_values, np.round(mask_values)):
            raise ConfigError("masks must hold integer labels (found fractional values)")
        self.masks = torch.from_numpy(np.round(mask_values).astype(np.int64))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Item:
        return {"image": self.images[index], "mask": self.masks[index]}


class ImageMaskPairs(Dataset[Item]):
    """Images ``(N, C, *S)`` in [-1, 1] with label maps ``(N, *S)``; items one-hot encode the
    map as ``source`` and give the image as ``target``. With ``patch_size`` each item is a random
    crop (global torch RNG, seeded by the engine) and the dataset counts
    ``PATCHES_PER_IMAGE`` items per image.

    >>> labels = torch.zeros(1, 8, 8, dtype=torch.long)
    >>> pairs = ImageMaskPairs(torch.zeros(1, 1, 8, 8), labels, num_labels=2, patch_size=4)
    >>> len(pairs), pairs[0]["source"].shape
    (16, torch.Size([2, 4, 4]))
    """

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

    def __getitem__(self, index: int) -> Item:
        index %= len(self.images)
        image, labels = self.images[index], self.labels[index]
        if self.patch_size:
            corner = [int(torch.randint(s - self.patch_size + 1, (1,))) for s in labels.shape]
            window = tuple(slice(c, c + self.patch_size) for c in corner)
            image, labels = image[(slice(None), *window)], labels[window]
        return {"source": one_hot(labels[None], self.num_labels)[0], "target": image}


class VolumeDataset(Dataset[Item]):
    """3D volumes brought to one grid: RAS orientation, ``spacing`` mm voxels, then cropped or
    padded to ``shape`` (MONAI's Orientation, Spacing and ResizeWithPadOrCrop).

    Items are ``{"image": (C, D, H, W) in [-1, 1], "label": int64}``.

    >>> import numpy as np
    >>> from medisynth.data.image import Image
    >>> vol = Image(np.ones((1, 8, 8, 4), np.float32), spacing=(1, 1, 2))
    >>> VolumeDataset([vol], spacing=(2, 2, 2), shape=(4, 4, 4))[0]["image"].shape
    torch.Size([1, 4, 4, 4])
    """

    def __init__(
        self,
        volumes: Sequence[Image],
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        shape: tuple[int, int, int] = (128, 128, 128),
        labels: Sequence[int] | None = None,
        intensity_map: IntensityMap | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        _check_volumes(volumes, "VolumeDataset")
        from monai.data import MetaTensor
        from monai.transforms import Orientation, ResizeWithPadOrCrop, Spacing

        self.intensity_map = _fit_for(volumes, intensity_map)
        to_ras = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
        resample = Spacing(pixdim=spacing, mode=interpolation)
        # pad with -1, the background of the [-1, 1] range
        fit = ResizeWithPadOrCrop(spatial_size=shape, mode="constant", value=-1.0)
        grids = []
        self.affines = []
        for volume in volumes:
            scaled = self.intensity_map.forward(volume.array)
            tensor: Any = MetaTensor(
                torch.from_numpy(scaled), affine=torch.from_numpy(volume.affine)
            )
            tensor = fit(resample(to_ras(tensor)))
            grids.append(torch.as_tensor(tensor).float())
            self.affines.append(np.asarray(tensor.affine))
        self.images = torch.stack(grids)
        self.labels = torch.as_tensor(
            labels if labels is not None else [0] * len(volumes), dtype=torch.int64
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Item:
        return {"image": self.images[index], "label": self.labels[index]}
