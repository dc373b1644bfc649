"""What a validation metric is: a small object that declares its inputs and computes its section.

A metric has a ``name`` (its key in ``report.json`` and in ``--metrics``), declares the inputs it
needs (:class:`Needs`: sets by role, labels, masks, features, pairs) and the keys its section
always has, computes that section from the run's resolved inputs (:meth:`Metric.compute`, which
also returns its verdict lines, data findings and the arrays its figures draw) and renders it in
the HTML report (:meth:`Metric.render`). A metric whose inputs are absent is skipped with a note
in the report (:meth:`Metric.missing`). The registry of metrics is
:data:`medisynth.validate.registry.METRICS`.

>>> Needs(sets=(K.REAL, K.SYNTHETIC, K.TRAIN), labels=(K.TRAIN,)).describe()
'real, synthetic, train; labels of train'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from medisynth.errors import ConfigError
from medisynth.metrics.bootstrap import LEVEL, N_RESAMPLES
from medisynth.validate import keys as K
from medisynth.validate.context import ROLES, RunInputs
from medisynth.validate.options import MetricSettings
from medisynth.validate.render import table
from medisynth.validate.results import Outcome, Section


@dataclass(frozen=True)
class Needs:
    """The inputs a metric needs; without them it is skipped.

    ``sets``: roles that must be given; ``labels`` / ``masks``: roles whose class labels /
    segmentation masks it needs; ``masks_any``: roles of which at least one must have masks;
    ``features``: roles whose features on ``--extractor`` it reads when those sets are given
    (computed once per run, before the metrics); ``pairs``: synthetic image i is compared with
    real image i (the counts must match).
    """

    sets: tuple[str, ...] = (K.REAL, K.SYNTHETIC)
    labels: tuple[str, ...] = ()
    masks: tuple[str, ...] = ()
    masks_any: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    pairs: bool = False

    def describe(self) -> str:
        """One line: the sets, labels, masks, features and pairing it needs."""
        parts = [", ".join(self.sets)]
        if self.labels:
            parts.append("labels of " + ", ".join(self.labels))
        if self.masks:
            parts.append("masks of " + ", ".join(self.masks))
        if self.masks_any:
            parts.append("masks of " + " or ".join(self.masks_any))
        if self.features:
            parts.append("features of " + ", ".join(self.features) + " (those given)")
        if self.pairs:
            parts.append("pairs (synthetic i with real i)")
        return "; ".join(parts)

    def roles(self) -> tuple[str, ...]:
        """Every role it names, in report order."""
        named = {*self.sets, *self.labels, *self.masks, *self.masks_any, *self.features}
        return tuple(r for r in ROLES if r in named)


class Metric(ABC):
    """One validation metric (subclass it, set the class attributes, implement compute)."""

    #: its key in report.json's ``metrics`` and its name for ``--metrics``
    name: ClassVar[str]
    #: what it needs
    needs: ClassVar[Needs] = Needs()
    #: what a skip note says it needs ("<name> skipped: <requirement>")
    requirement: ClassVar[str] = ""
    #: keys its section always has
    keys: ClassVar[tuple[str, ...]] = ()
    #: run when ``--metrics`` is not given
    default: ClassVar[bool] = False
    #: a distance between distributions (warned about on small sets)
    distribution: ClassVar[bool] = False
    #: sections of metrics earlier in the registry that it reads when they ran
    uses: ClassVar[tuple[str, ...]] = ()
    #: beginnings of its verdict lines that the HTML report marks as alarms
    alarms: ClassVar[tuple[str, ...]] = ()

    def missing(self, inputs: RunInputs) -> str | None:
        """The skip note when an input it needs is absent, else None."""
        needs = self.needs
        present = (
            all(inputs.has(r) for r in needs.sets)
            and all(_has(inputs, r, "labels") for r in needs.labels)
            and all(_has(inputs, r, "masks") for r in needs.masks)
            and (not needs.masks_any or any(_has(inputs, r, "masks") for r in needs.masks_any))
        )
        return None if present else f"{self.name} skipped: {self.requirement}"

    def check(self, inputs: RunInputs, settings: MetricSettings) -> None:
        """Refuse inputs that are present but unusable (``ConfigError``); add notes about them
        to ``inputs.warnings``. Runs for every selected metric before any computes; here: a
        metric on pairs refuses sets of different sizes."""
        n_real, n_synthetic = (len(inputs.sets[r].images) for r in (K.REAL, K.SYNTHETIC))
        if self.needs.pairs and n_real != n_synthetic:
            raise ConfigError(
                f"paired metrics need as many synthetic as real images "
                f"({n_synthetic} vs {n_real}), paired by index"
            )

    @abstractmethod
    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        """Its section (with the keys it declares), verdict lines, findings and figure arrays;
        ``done``: the sections computed before it."""

    def render(self, section: Section, arrays: Mapping[str, Any]) -> str:
        """Its part of the HTML report below its heading: a table of the section by default.

        ``arrays``: the run's arrays (``unit``: the sets in ``[0, 1]`` by role, and what the
        metrics returned as ``Outcome.arrays``)."""
        return table(section)


def _has(inputs: RunInputs, role: str, what: str) -> bool:
    return inputs.has(role) and getattr(inputs.sets[role], what) is not None


def bootstrap_info(ci: Mapping[str, Any], method: str, **extra: Any) -> dict[str, Any]:
    """The report's ``bootstrap`` entry: how a metric's intervals were made."""
    return {N_RESAMPLES: ci[N_RESAMPLES], LEVEL: ci[LEVEL], "method": method, **extra}
