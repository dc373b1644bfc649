"""What is known about the training data: shape, classes, intensity maps, provenance.

:class:`DataInfo` is what a GAN family builds its networks from and what a model package
records about its data (no path: paths can name patients).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medisynth.data.histogram import HistogramPrior
from medisynth.data.intensity import IntensityMap, intensity_map_from_dict


@dataclass
class DataInfo:
    """What a family and a model package need to know about the training data.

    Every loader of :mod:`medisynth.data.formats` returns one with its dataset; it travels
    into the model package (the card's ``data`` section).

    >>> info = DataInfo(channels=1, spatial_shape=(28, 28), class_names=["a", "b"])
    >>> info.num_classes, info.spatial_dims
    (2, 2)
    >>> DataInfo.from_dict(info.to_dict()) == info
    True
    """

    channels: int
    spatial_shape: tuple[int, ...]
    class_names: list[str] = field(default_factory=lambda: ["0"])
    class_counts: dict[int, int] = field(default_factory=dict)
    intensity_map: IntensityMap = field(default_factory=lambda: IntensityMap(-1.0, 1.0))
    source_dtype: str = "float32"
    modality: str = ""
    spacing: tuple[float, ...] | None = None
    fingerprint: str = ""
    source: str = ""
    #: image-to-image models: the input domain's intensity map and channels (``intensity_map``
    #: and ``channels`` then describe the output, i.e. target, domain)
    source_intensity_map: IntensityMap | None = None
    source_channels: int | None = None
    #: mask -> image models: the number of labels (the source is their one-hot encoding)
    mask_labels: int | None = None
    #: paired models with ``data.source_prior``: the histogram prior appended to the source
    source_prior: HistogramPrior | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def spatial_dims(self) -> int:
        return len(self.spatial_shape)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly mapping (intensity maps and the prior as their own dicts)."""
        out = asdict(self)
        out["intensity_map"] = self.intensity_map.to_dict()
        if self.source_intensity_map is not None:
            out["source_intensity_map"] = self.source_intensity_map.to_dict()
        if self.source_prior is not None:
            out["source_prior"] = self.source_prior.to_dict()
        out["class_counts"] = {str(k): v for k, v in self.class_counts.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataInfo:
        """The inverse of :meth:`to_dict` (what a model package's card stores)."""
        data = dict(data)
        data["intensity_map"] = intensity_map_from_dict(data["intensity_map"])
        if data.get("source_intensity_map") is not None:
            data["source_intensity_map"] = intensity_map_from_dict(data["source_intensity_map"])
        if data.get("source_prior") is not None:
            data["source_prior"] = HistogramPrior.from_dict(data["source_prior"])
        data["class_counts"] = {int(k): int(v) for k, v in data.get("class_counts", {}).items()}
        data["spatial_shape"] = tuple(data["spatial_shape"])
        if data.get("spacing") is not None:
            data["spacing"] = tuple(data["spacing"])
        return cls(**data)
