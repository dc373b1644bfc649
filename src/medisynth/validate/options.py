"""The settings that validation metrics read.

:class:`MetricSettings` holds every setting of a run; the metrics of the registry
(:mod:`medisynth.validate.registry`) read it. :class:`~medisynth.validate.protocol.ValidateOptions`
adds the choice of metrics (checked against the registry, whose defaults it takes).

>>> MetricSettings(percentile=60).check()
Traceback (most recent call last):
...
medisynth.errors.ConfigError: percentile must be in (0, 50), got 60
"""

from __future__ import annotations

from dataclasses import dataclass

from medisynth.errors import ConfigError
from medisynth.metrics.features import known_extractors


@dataclass
class MetricSettings:
    """Settings of one validation run (all have defaults)."""

    #: the metrics to run, by name (``ValidateOptions`` checks them and gives the defaults)
    metrics: tuple[str, ...] = ()
    extractor: str = "inception"
    radiomics_extractor: str = "radiomics"
    window: str = "auto"
    k: int = 5
    percentile: float = 5.0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seeds: int = 3
    epochs: int = 20
    k_pairs: int = 8
    cache_dir: str | None = None
    progress: bool = True
    seed: int = 0
    #: bootstrap resamples of the confidence intervals of density, the near-copy fraction and
    #: the utility AUC (0: no intervals, PRDC's closed-form ones included)
    bootstrap: int = 200
    #: half-sample resamples of the FID interval (0: none; one eigendecomposition each)
    fid_bootstrap: int = 0
    #: utility and segmentation: also train on synthetic images with classic augmentation
    #: (the ``synthetic+classic`` condition; off by default)
    classic_synthetic: bool = False
    #: utility and segmentation: paired-bootstrap resamples of the comparison of
    #: real+classic+synthetic with real+classic on the same test images (0: none)
    paired_bootstrap: int = 2000

    def check(self) -> None:
        """Refuse unknown extractors and out-of-range numbers (:class:`ConfigError`)."""
        names = {name.partition(":")[0] for name in known_extractors()}
        for spec in (self.extractor, self.radiomics_extractor):
            if isinstance(spec, str) and spec.partition(":")[0] not in names:
                raise ConfigError(
                    f"unknown feature extractor {spec!r}; known: {', '.join(known_extractors())}"
                )
        if not 0 < self.percentile < 50:
            raise ConfigError(f"percentile must be in (0, 50), got {self.percentile}")
        if self.k < 1 or self.seeds < 1 or self.epochs < 1:
            raise ConfigError("k, seeds and epochs must be at least 1")
        if self.bootstrap < 0 or self.fid_bootstrap < 0 or self.paired_bootstrap < 0:
            raise ConfigError(
                f"bootstrap resamples must be >= 0 (0 disables), got bootstrap={self.bootstrap},"
                f" fid_bootstrap={self.fid_bootstrap}, paired_bootstrap={self.paired_bootstrap}"
            )

    def utility_conditions(self) -> tuple[str, ...]:
        """The training conditions of the utility and segmentation metrics.

        >>> MetricSettings(classic_synthetic=True).utility_conditions()[2:4]
        ('synthetic', 'synthetic+classic')
        """
        from medisynth.metrics.utility import CONDITIONS, KNOWN_CONDITIONS

        extra = ("synthetic+classic",) if self.classic_synthetic else ()
        return tuple(c for c in KNOWN_CONDITIONS if c in CONDITIONS or c in extra)
