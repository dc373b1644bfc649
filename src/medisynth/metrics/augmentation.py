"""Classic (non-generative) augmentation for the utility classifier and segmenter: MONAI transforms.

The downstream-utility experiments (:mod:`medisynth.metrics.utility`) ask whether synthetic
images help beyond what every practitioner already does: flips, small rotations, translation and
scale, brightness and contrast jitter. :class:`ClassicAugmentation` builds that pipeline from
``monai.transforms`` (2D or 3D by the images; in 3D every spatial axis gets the same treatment)
and applies it to each image of a batch on the fly, with its own seeded random state, so a run is
reproducible. Images are augmented in ``[0, 1]`` (zero padding is black) and clipped back to it.
For segmentation the dictionary versions move image and mask together (the mask resampled with
nearest-neighbour interpolation and never intensity-jittered).

MONAI's metadata tracking is switched off while a batch is transformed (plain tensors in and
out: several times less overhead per image). On 28 x 28 images the pipeline costs about 1.5 ms
per image on one CPU thread (``docs/validate.md`` gives the measured slowdown per epoch).

>>> import torch
>>> augment = ClassicAugmentation()
>>> pipeline = augment.pipeline((8, 8), seed=0)
>>> out = augment_images(torch.rand(3, 1, 8, 8), pipeline)
>>> out.shape, bool(out.min() >= 0), bool(out.max() <= 1)
(torch.Size([3, 1, 8, 8]), True, True)
>>> augment.describe(2)[0]
'RandFlip(spatial_axis=1, prob=0.5)'
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch

#: the name of the flip that every utility condition gets (the hand-written base augmentation)
BASE_AUGMENTATION = ("horizontal flip of half the images (left-right, p=0.5)",)
#: dictionary keys of image and mask in a segmentation pipeline
IMAGE, MASK = "image", "mask"


@dataclass(frozen=True)
class ClassicAugmentation:
    """Settings of the classic augmentation pipeline (MONAI transforms, applied in this order).

    Attributes:
        flip_axes: spatial axes flipped, each with probability ``flip_prob`` (``-1``: the last,
            left-right; in 3D ``(0, 1, 2)`` flips along every axis). Default left-right only:
            anatomy is rarely plausible upside down.
        rotate90_prob: probability of a quarter, half or three-quarter turn (MONAI
            ``RandRotate90``, exact: no resampling; in 3D about the first axis, turning the
            last two). Off by default; with flips on both axes it gives all eight orientations
            of a square patch, the lossless choice for orientation-free data (vessel patches).
        affine_prob: probability of the random affine map (rotation, translation, scale;
            0 leaves it out).
        rotate_degrees: rotation drawn in ``[-r, r]`` degrees (in 3D about each axis).
        translate_fraction: shift drawn in ``[-t, t]`` times the size, per axis.
        scale_fraction: scale factor drawn in ``[1 - s, 1 + s]``, per axis.
        contrast_gamma: gamma range of ``RandAdjustContrast`` (contrast), probability
            ``intensity_prob``.
        intensity_scale: ``RandScaleIntensity`` factor range ``[-f, f]`` (values x ``1 + f``).
        brightness: ``RandShiftIntensity`` offset range ``[-b, b]`` (images in ``[0, 1]``).
        intensity_prob: probability of each intensity transform.
    """

    flip_axes: tuple[int, ...] = (-1,)
    flip_prob: float = 0.5
    rotate90_prob: float = 0.0
    affine_prob: float = 0.8
    rotate_degrees: float = 10.0
    translate_fraction: float = 0.1
    scale_fraction: float = 0.1
    contrast_gamma: tuple[float, float] = (0.8, 1.25)
    intensity_scale: float = 0.1
    brightness: float = 0.1
    intensity_prob: float = 0.5

    def _flip_axes(self, spatial_dims: int) -> tuple[int, ...]:
        return tuple(sorted({a % spatial_dims for a in self.flip_axes}))

    def _turn_axes(self, spatial_shape: Sequence[int]) -> tuple[int, int]:
        """The plane of the quarter turns (the last two axes); they must be equal in size."""
        axes = (len(spatial_shape) - 2, len(spatial_shape) - 1)
        if self.rotate90_prob > 0 and spatial_shape[axes[0]] != spatial_shape[axes[1]]:
            raise ValueError(
                f"quarter turns need square images (got {tuple(spatial_shape)}); "
                "set rotate90_prob to 0"
            )
        return axes

    def _affine_ranges(self, spatial_shape: Sequence[int]) -> dict[str, Any]:
        d = len(spatial_shape)
        rotate = math.radians(self.rotate_degrees)
        return {
            "rotate_range": (rotate,) if d == 2 else (rotate,) * 3,
            "translate_range": tuple(self.translate_fraction * s for s in spatial_shape),
            "scale_range": (self.scale_fraction,) * d,
        }

    def pipeline(self, spatial_shape: Sequence[int], seed: int) -> Any:
        """A seeded ``monai.transforms.Compose`` for channel-first images of this size."""
        from monai.transforms import (
            Compose,
            RandAdjustContrast,
            RandAffine,
            RandFlip,
            RandRotate90,
            RandScaleIntensity,
            RandShiftIntensity,
        )

        shape = tuple(int(s) for s in spatial_shape)
        flips = [RandFlip(self.flip_prob, a) for a in self._flip_axes(len(shape))]
        turns = [RandRotate90(self.rotate90_prob, 3, self._turn_axes(shape))]
        affine = [
            RandAffine(
                self.affine_prob,
                **self._affine_ranges(shape),
                spatial_size=shape,
                cache_grid=True,
                mode="bilinear",
                padding_mode="zeros",
            ),
        ]
        compose = Compose(
            [
                *flips,
                *(turns if self.rotate90_prob > 0 else []),
                *(affine if self.affine_prob > 0 else []),
                RandAdjustContrast(self.intensity_prob, gamma=self.contrast_gamma),
                RandScaleIntensity(self.intensity_scale, prob=self.intensity_prob),
                RandShiftIntensity(self.brightness, prob=self.intensity_prob),
            ]
        )  # fmt: skip
        compose.set_random_state(seed=seed)
        return compose

    def pair_pipeline(self, spatial_shape: Sequence[int], seed: int) -> Any:
        """The dictionary version for ``{"image", "mask"}``: spatial transforms move both (the
        mask with nearest-neighbour interpolation), intensity transforms touch the image only."""
        from monai.transforms import (
            Compose,
            RandAdjustContrastd,
            RandAffined,
            RandFlipd,
            RandRotate90d,
            RandScaleIntensityd,
            RandShiftIntensityd,
        )

        shape = tuple(int(s) for s in spatial_shape)
        both = (IMAGE, MASK)
        flips = [RandFlipd(both, self.flip_prob, a) for a in self._flip_axes(len(shape))]
        turns = [RandRotate90d(both, self.rotate90_prob, 3, self._turn_axes(shape))]
        affine = [
            RandAffined(
                both,
                spatial_size=shape,
                prob=self.affine_prob,
                cache_grid=True,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
                **self._affine_ranges(shape),
            ),
        ]
        compose = Compose(
            [
                *flips,
                *(turns if self.rotate90_prob > 0 else []),
                *(affine if self.affine_prob > 0 else []),
                RandAdjustContrastd(IMAGE, self.intensity_prob, gamma=self.contrast_gamma),
                RandScaleIntensityd(IMAGE, self.intensity_scale, prob=self.intensity_prob),
                RandShiftIntensityd(IMAGE, self.brightness, prob=self.intensity_prob),
            ]
        )  # fmt: skip
        compose.set_random_state(seed=seed)
        return compose

    def describe(self, spatial_dims: int) -> list[str]:
        """The transforms in order, as MONAI names them with their settings (for reports)."""
        rotate = f"±{self.rotate_degrees:g}°" + (" about each axis" if spatial_dims == 3 else "")
        flips = [
            f"RandFlip(spatial_axis={a}, prob={self.flip_prob:g})"
            for a in self._flip_axes(spatial_dims)
        ]
        turns = [f"RandRotate90(prob={self.rotate90_prob:g}, max_k=3)"]
        affine = [
            f"RandAffine(prob={self.affine_prob:g}, rotate {rotate}, translate "
            f"±{self.translate_fraction:.0%} of the size per axis, scale "
            f"±{self.scale_fraction:.0%} per axis, bilinear, zero padding)",
        ]
        return [
            *flips,
            *(turns if self.rotate90_prob > 0 else []),
            *(affine if self.affine_prob > 0 else []),
            f"RandAdjustContrast(prob={self.intensity_prob:g}, gamma={list(self.contrast_gamma)})",
            f"RandScaleIntensity(prob={self.intensity_prob:g}, factors=±{self.intensity_scale:g})",
            f"RandShiftIntensity(prob={self.intensity_prob:g}, offsets=±{self.brightness:g})",
            "clipped to [0, 1]",
        ]

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)


@contextmanager
def _plain_tensors() -> Iterator[None]:
    """MONAI transforms return plain tensors inside (no metadata tracking), as before after."""
    from monai.data import get_track_meta, set_track_meta

    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


def augment_images(images: torch.Tensor, pipeline: Any) -> torch.Tensor:
    """Each image of ``(N, C, ...)`` in ``[0, 1]`` through ``pipeline``, clipped to ``[0, 1]``."""
    with _plain_tensors():
        out = [torch.as_tensor(pipeline(image)) for image in images]
    return torch.stack(out).clamp_(0.0, 1.0)


def augment_pairs(
    images: torch.Tensor, masks: torch.Tensor, pipeline: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image + mask pairs through a :meth:`ClassicAugmentation.pair_pipeline`; images clipped
    to ``[0, 1]``, masks kept binary."""
    with _plain_tensors():
        pairs = [pipeline({IMAGE: x, MASK: m}) for x, m in zip(images, masks, strict=True)]
    x = torch.stack([torch.as_tensor(p[IMAGE]) for p in pairs]).clamp_(0.0, 1.0)
    m = torch.stack([torch.as_tensor(p[MASK]) for p in pairs])
    return x, (m > 0.5).to(masks.dtype)
