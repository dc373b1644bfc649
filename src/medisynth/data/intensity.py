"""Modality-aware intensity scaling to [-1, 1], with an exact inverse that serialises.

A map is linear: ``y = 2 * (x - low) / (high - low) - 1``, optionally clipping ``x`` to
``[low, high]`` first. The three ways to choose ``low`` and ``high`` are

* CT: a window in Hounsfield units (:data:`CT_WINDOWS` holds the usual presets),
* MR and other quantitative images without fixed units: robust percentiles of the data,
* 8- and 16-bit images (PNG, X-ray, ultrasound): the range of the stored integer type.

:func:`fit_intensity_map` picks the rule from the modality. ``map.to_dict()`` and
:func:`intensity_map_from_dict` store and restore a map, so it travels with a trained model and
generated images are written back in the original units.

>>> import numpy as np
>>> m = IntensityMap.window("CT", centre=40, width=400)
>>> y = m.forward(np.array([-160.0, 40.0, 240.0], dtype=np.float32))
>>> y.tolist()
[-1.0, 0.0, 1.0]
>>> m.inverse(y).tolist()
[-160.0, 40.0, 240.0]
>>> intensity_map_from_dict(m.to_dict()) == m
True
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from medisynth.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: numpy arrays and torch tensors both work, and come back as they went in.
ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")

#: CT windows as (centre, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "soft-tissue": (40.0, 400.0),
    "abdomen": (50.0, 400.0),
    "liver": (60.0, 160.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "full": (1023.5, 4095.0),  # -1024 .. 3071 HU, the usual stored range
}

#: Default percentiles for MR and other images without absolute units.
DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)

#: The in-brain percentiles of :func:`normalise_in_brain` (they map to 0 and 1).
BRAIN_PERCENTILES: tuple[float, float] = (1.0, 99.0)

_INTEGER_RANGES: dict[str, tuple[float, float]] = {
    "uint8": (0.0, 255.0),
    "uint16": (0.0, 65535.0),
    "int16": (-32768.0, 32767.0),
    "uint12": (0.0, 4095.0),
}


@dataclass(frozen=True)
class IntensityMap:
    """A linear map from source intensities ``[low, high]`` to ``[-1, 1]`` and back.

    Attributes:
        low: the source value that maps to -1.
        high: the source value that maps to +1.
        clip: whether values outside ``[low, high]`` are clipped by :meth:`forward`.
        kind: how low/high were chosen: ``"window"``, ``"percentile"``, ``"range"`` or ``"fixed"``.
        modality: the modality the map was made for (``"CT"``, ``"MR"``, ...), informative.
        description: a human-readable note, e.g. ``"CT window soft-tissue (40/400 HU)"``.
    """

    low: float
    high: float
    clip: bool = True
    kind: str = "fixed"
    modality: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.high <= self.low:
            raise ConfigError(
                f"intensity map needs finite low < high, got low={self.low}, high={self.high}"
            )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def window(
        cls, modality: str = "CT", *, centre: float, width: float, name: str = ""
    ) -> IntensityMap:
        """A window given by its centre and width (the radiology convention, in HU for CT)."""
        if width <= 0:
            raise ConfigError(f"window width must be positive, got {width}")
        label = f"window {name} " if name else "window "
        return cls(
            low=float(centre - width / 2),
            high=float(centre + width / 2),
            clip=True,
            kind="window",
            modality=modality,
            description=f"{modality} {label}(centre {centre:g}, width {width:g})".strip(),
        )

    @classmethod
    def ct_preset(cls, name: str) -> IntensityMap:
        """A named CT window from :data:`CT_WINDOWS`."""
        if name not in CT_WINDOWS:
            raise ConfigError(
                f"unknown CT window {name!r}; known windows: {', '.join(sorted(CT_WINDOWS))}"
            )
        centre, width = CT_WINDOWS[name]
        return cls.window("CT", centre=centre, width=width, name=name)

    @classmethod
    def percentile(
        cls,
        arrays: Iterable[np.ndarray],
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        modality: str = "MR",
        nonzero: bool = True,
    ) -> IntensityMap:
        """Robust percentiles of the data (pooled over all arrays).

        Args:
            arrays: the images the map is fitted on.
            percentiles: lower and upper percentile, in [0, 100].
            modality: recorded in the map.
            nonzero: ignore exact zeros (the background of skull-stripped or masked volumes),
                unless everything is zero.
        """
        lo_p, hi_p = (float(p) for p in percentiles)
        if not 0 <= lo_p < hi_p <= 100:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        values = np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays])
        values = values[np.isfinite(values)]
        if nonzero and np.any(values != 0):
            values = values[values != 0]
        if values.size == 0:
            raise ConfigError("cannot fit an intensity map on empty or non-finite data")
        low, high = (float(v) for v in np.percentile(values, [lo_p, hi_p]))
        if high <= low:  # constant image: keep a valid, invertible map
            high = low + 1.0
        return cls(
            low=low,
            high=high,
            clip=True,
            kind="percentile",
            modality=modality,
            description=f"{modality} percentiles {lo_p:g}-{hi_p:g} ({low:.6g} .. {high:.6g})",
        )

    @classmethod
    def in_brain(cls, modality: str = "MR") -> IntensityMap:
        """The map of scans already put on the 0..1 scale by :func:`normalise_in_brain`:
        ``kind == "brain"`` tells ``translate`` to normalise every input scan the same way."""
        low, high = BRAIN_PERCENTILES
        return cls(
            low=0.0,
            high=1.0,
            clip=True,
            kind="brain",
            modality=modality,
            description=f"{modality} per scan: in-brain percentiles {low:g}-{high:g} -> 0..1",
        )

    @classmethod
    def integer_range(cls, dtype: str, modality: str = "") -> IntensityMap:
        """The full range of an integer storage type (``"uint8"``, ``"uint16"``, ...)."""
        if dtype not in _INTEGER_RANGES:
            raise ConfigError(
                f"no integer range for dtype {dtype!r}; known: {', '.join(_INTEGER_RANGES)}"
            )
        low, high = _INTEGER_RANGES[dtype]
        return cls(
            low=low,
            high=high,
            clip=False,
            kind="range",
            modality=modality,
            description=f"{dtype} range {low:g} .. {high:g}",
        )

    # ------------------------------------------------------------------ the map
    @property
    def scale(self) -> float:
        return 2.0 / (self.high - self.low)

    def forward(self, x: ArrayT) -> ArrayT:
        """Source intensities to [-1, 1]. Works on numpy arrays and torch tensors."""
        y = (x - self.low) * self.scale - 1.0
        if self.clip:  # clipping after the map also absorbs float rounding at the edges
            y = y.clip(-1.0, 1.0)
        return y

    def inverse(self, y: ArrayT) -> ArrayT:
        """[-1, 1] back to source intensities (exact for values inside the window)."""
        return (y + 1.0) / self.scale + self.low

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def intensity_map_from_dict(data: dict[str, Any]) -> IntensityMap:
    """Rebuild a map saved with :meth:`IntensityMap.to_dict`; unknown keys, missing bounds and
    values of the wrong type are a :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"an intensity map is a JSON object, got {type(data).__name__}")
    known = set(IntensityMap.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"unknown intensity-map keys {sorted(unknown, key=str)}; expected some of "
            f"{sorted(known)}"
        )
    for key in ("low", "high"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"intensity map {key!r} must be a number, got {value!r}")
    if not isinstance(data.get("clip", True), bool):
        raise ConfigError(f"intensity map 'clip' must be true or false, got {data['clip']!r}")
    for key in ("kind", "modality", "description"):
        if not isinstance(data.get(key, ""), str):
            raise ConfigError(f"intensity map {key!r} must be a string, got {data[key]!r}")
    return IntensityMap(**data)


def _check_hounsfield(arrays: Sequence[np.ndarray]) -> None:
    """CT in HU holds air (about -1000) somewhere; data that never goes below -200 is not HU."""
    minima = [float(np.nanmin(a)) for a in arrays if np.size(a)]
    if minima and min(minima) > -200:
        raise ConfigError(
            f"the data are labelled CT but do not look like Hounsfield units (minimum "
            f"{min(minima):g}, while air is about -1000 HU)",
        )


def fit_intensity_map(
    arrays: Sequence[np.ndarray],
    modality: str = "",
    source_dtype: str = "",
    ct_window: str = "soft-tissue",
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> IntensityMap:
    """Choose the intensity map a modality calls for.

    * ``CT`` (values in HU): the window ``ct_window`` from :data:`CT_WINDOWS`. Data labelled CT
      that never go below -200 are refused: they are not in HU (wrong modality, or a PNG export).
    * ``uint8``/``uint16`` sources other than CT and MR (PNG, X-ray, ultrasound, ...): the range
      of the type.
    * everything else (MR, PET, float data): robust percentiles.

    >>> import numpy as np
    >>> fit_intensity_map([np.zeros((4, 4))], modality="OT", source_dtype="uint8").high
    255.0
    """
    modality = modality.upper()
    if modality == "CT":
        _check_hounsfield(arrays)
        return IntensityMap.ct_preset(ct_window)
    if modality != "MR" and source_dtype in ("uint8", "uint16"):
        return IntensityMap.integer_range(source_dtype, modality=modality)
    return IntensityMap.percentile(arrays, percentiles, modality=modality or "unknown")


def background_level(array: np.ndarray) -> float:
    """The level below which a voxel counts as background: 5% of the way from the 0.5th to the
    99th percentile, so scanner noise in the air around the body is not anatomy, and a few
    outliers (negative voxels left by resampling) do not make the whole background anatomy.

    >>> background_level(np.array([0.0, 0.0, 100.0, 100.0]))
    5.0
    """
    low, high = (float(v) for v in np.percentile(array, [0.5, 99]))
    return low + 0.05 * (high - low)


def foreground_mask(image: np.ndarray, level: float | None = None) -> np.ndarray:
    """The ``(*spatial)`` foreground of an unscaled ``(C, *spatial)`` image: pixels above
    ``level`` (default: :func:`background_level` of the image) in any channel.

    >>> foreground_mask(np.array([[[0.0, 10.0], [100.0, 0.0]]])).tolist()
    [[False, True], [True, False]]
    """
    floor = background_level(image) if level is None else level
    return np.asarray(np.any(image > floor, axis=0))


def brain_region(image: np.ndarray, brain_mask: np.ndarray | None = None) -> np.ndarray:
    """The ``(*spatial)`` brain of a ``(C, *spatial)`` scan: ``brain_mask > 0`` when a mask is
    given, else the voxels above 0 in any channel (skull-stripped scans keep 0 outside).

    >>> brain_region(np.array([[[0.0, 3.0], [-1.0, 0.0]]])).tolist()
    [[False, True], [False, False]]
    """
    if brain_mask is None:
        return foreground_mask(image, level=0.0)
    mask = np.asarray(brain_mask)
    if mask.ndim == image.ndim:  # a (1, *spatial) mask read as an image
        mask = mask[0]
    if mask.shape != image.shape[1:]:
        raise ConfigError(
            f"the brain mask {mask.shape} is not on the scan's grid {image.shape[1:]}"
        )
    return np.asarray(mask > 0)


def normalise_in_brain(image: np.ndarray, brain_mask: np.ndarray | None = None) -> np.ndarray:
    """One scan on the scale every scan of ``data.normalisation: brain`` shares: each channel's
    :data:`BRAIN_PERCENTILES` inside the brain (:func:`brain_region`) map to 0 and 1 (clipped),
    and everything outside the brain is 0. Raw integer scans and scans z-scored inside the
    brain (whose background is some constant) land on the same scale.

    >>> scan = np.array([[[0.0, 10.0, 20.0], [30.0, 40.0, 0.0]]])
    >>> normalise_in_brain(scan).astype(float).round(2).tolist()
    [[[0.0, 0.0, 0.33], [0.67, 1.0, 0.0]]]
    """
    region = brain_region(image, brain_mask)
    if not region.any():
        raise ConfigError(
            "in-brain normalisation found no brain voxel (give a brain mask, or a scan that "
            "is 0 outside the brain)"
        )
    out = np.zeros(image.shape, dtype=np.float32)
    for channel, values in enumerate(np.asarray(image, dtype=np.float32)):
        low, high = np.percentile(values[region], BRAIN_PERCENTILES)
        scaled = np.clip((values - low) / max(float(high - low), 1e-6), 0.0, 1.0)
        out[channel] = np.where(region, scaled, 0.0)
    return out
