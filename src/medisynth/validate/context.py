"""The inputs of one validation run, resolved once for all metrics.

:meth:`RunInputs.resolve` checks that the sets fit together, lets the real set stand in as
held-out set where none is given, picks one intensity window and maps every set to ``[0, 1]``.
Features are computed once per extractor and set, and shared by the metrics that read them.

>>> import numpy as np
>>> from medisynth.data.sets import ImageSet
>>> real = ImageSet("real", np.zeros((4, 1, 6, 6), np.float32), None, "uint8", "r")
>>> syn = ImageSet("syn", np.full((3, 1, 6, 6), 255, np.float32), None, "uint8", "s")
>>> inputs = RunInputs.resolve({"real": real, "synthetic": syn})
>>> inputs.window, inputs.roles(), float(inputs.unit["synthetic"].max())
((0.0, 255.0), ['real', 'synthetic'], 1.0)
>>> inputs.features("pixels", "synthetic").shape
(3, 36)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from medisynth.data.sets import ImageSet, intensity_window, to_unit
from medisynth.errors import ConfigError
from medisynth.metrics.features import FeatureExtractor, extract_features, get_extractor
from medisynth.validate import keys as K

log = logging.getLogger(__name__)

#: the roles of the sets, in the order the report lists them
ROLES = (K.REAL, K.SYNTHETIC, K.TRAIN, K.HELDOUT)


class Steps:
    """Times named steps of a run (the report's ``timings_s``)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        log.info("validate: %s ...", name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)


@dataclass
class RunInputs:
    """The sets of a run by role, their ``[0, 1]`` arrays, the window, and shared features.

    ``mask`` (non-zero = inside, one per real image) restricts the paired metrics.
    ``warnings`` collects the report's notes about the inputs.
    """

    sets: dict[str, ImageSet]
    unit: dict[str, np.ndarray]
    window: tuple[float, float]
    mask: np.ndarray | None = None
    cache_dir: str | None = None
    progress: bool = False
    warnings: list[str] = field(default_factory=list)
    steps: Steps = field(default_factory=Steps)
    _extractors: dict[str, FeatureExtractor] = field(default_factory=dict, repr=False)
    _features: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def resolve(
        cls,
        sets: Mapping[str, ImageSet | None],
        window: str = "auto",
        mask: np.ndarray | None = None,
        cache_dir: str | None = None,
        progress: bool = False,
    ) -> RunInputs:
        """Check the sets' sizes against the real set's and map them all to ``[0, 1]``.

        Without a held-out set, a real set other than the training set serves as one (with a
        note in ``warnings``).

        Raises:
            ConfigError: a set whose images are not of the real images' size.
        """
        real, synthetic = sets[K.REAL], sets[K.SYNTHETIC]
        assert real is not None and synthetic is not None
        train, heldout = sets.get(K.TRAIN), sets.get(K.HELDOUT)
        if synthetic.images.shape[1:] != real.images.shape[1:]:
            raise ConfigError(
                f"synthetic images are {tuple(synthetic.images.shape[1:])} (C, ...) but real "
                f"images {tuple(real.images.shape[1:])}; resample one set to the other's size "
                "first"
            )
        for role, other in ((K.TRAIN, train), (K.HELDOUT, heldout)):
            if other is not None and other.images.shape[1:] != real.images.shape[1:]:
                raise ConfigError(
                    f"{role} images are {tuple(other.images.shape[1:])} but real images "
                    f"{tuple(real.images.shape[1:])}"
                )
        warnings = []
        if heldout is None and train is not None and real.fingerprint != train.fingerprint:
            heldout = real
            warnings.append("no --heldout given: the real set serves as held-out data")
        given = {K.REAL: real, K.SYNTHETIC: synthetic, K.TRAIN: train, K.HELDOUT: heldout}
        present = {role: s for role, s in given.items() if s is not None}
        chosen = intensity_window([real, *[s for r, s in present.items() if r != K.REAL]], window)
        unit = {role: to_unit(s.images, chosen) for role, s in present.items()}
        return cls(present, unit, chosen, mask, cache_dir, progress, warnings)

    def roles(self) -> list[str]:
        """The roles of the sets present, in :data:`ROLES` order."""
        return list(self.sets)

    def has(self, role: str) -> bool:
        """Whether a set of this role is present."""
        return role in self.sets

    def extractor(self, spec: str) -> FeatureExtractor:
        """The feature extractor ``spec`` names (made once per run)."""
        if spec not in self._extractors:
            self._extractors[spec] = get_extractor(spec)
        return self._extractors[spec]

    def features(self, spec: str, role: str) -> np.ndarray:
        """The features of the ``role`` set on the extractor ``spec``, computed once: a set
        serving in two roles (the real set as held-out set) shares them."""
        if (spec, role) not in self._features:
            shared = self._shared(spec, role)
            self._features[spec, role] = shared if shared is not None else self._extract(spec, role)
        return self._features[spec, role]

    def real_and_synthetic(self, spec: str) -> tuple[np.ndarray, np.ndarray]:
        """The features of the real and the synthetic set on the extractor ``spec``."""
        return self.features(spec, K.REAL), self.features(spec, K.SYNTHETIC)

    def prefetch(self, spec: str, roles: Iterable[str]) -> None:
        """Compute the features of the present sets among ``roles`` (one timed step each)."""
        wanted = set(roles)
        for role in [r for r in self.roles() if r in wanted]:
            if (spec, role) in self._features or self._shared(spec, role) is not None:
                self.features(spec, role)
                continue
            with self.steps(f"features {role}"):
                self.features(spec, role)

    def _shared(self, spec: str, role: str) -> np.ndarray | None:
        """Features already computed for the same set in another role, if any."""
        for (s, r), features in self._features.items():
            if s == spec and self.sets[r] is self.sets[role]:
                return features
        return None

    def _extract(self, spec: str, role: str) -> np.ndarray:
        extractor = self.extractor(spec)
        return extract_features(
            self.unit[role],
            extractor,
            cache_dir=self.cache_dir,
            fingerprint=f"{self.sets[role].fingerprint}:{self.window}",
            progress=self.progress,
            desc=f"{extractor.name} features ({role})",
        )
