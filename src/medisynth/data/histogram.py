"""Histogram-matched intensity priors for paired translation (``data.source_prior``).

A source scan whose in-body histogram is mapped onto the training target's (optionally
inverted first: T1 -> T2 reverses the tissue order) is the classic non-learned translation
baseline. As a prior, it is computed for every scan, at training and at translation time, and
given to the generator as an extra input channel; the generator then predicts a correction of
it (``target = prior + residual``, the residual starting at zero), as a super-resolution
generator predicts a correction of bicubic interpolation. Matching is piecewise linear between
the 101 percentiles of the scan's foreground and those of the training target, so it is a
monotone curve per scan and does not depend on the scan's own contrast curve (Nyul & Udupa
1999).

Matching works on images already scaled to [-1, 1] (their intensity maps applied), inside a
foreground mask taken from the unscaled image
(:func:`~medisynth.data.intensity.foreground_mask`: the intensity map's clipping must not turn
the darkest tissue into background); the prior is -1 outside it.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> source = np.full((1, 8, 8), -1.0); source[0, 2:6, 2:6] = rng.uniform(-0.5, 0.5, (4, 4))
>>> target = np.where(source > -1, -source, -1.0)          # an inverted contrast
>>> mask = source[0] > -1
>>> prior = HistogramPrior.fit([source], [target], [mask])
>>> prior.inverted, bool(np.abs(prior.apply(source, mask) - target).max() < 0.05)
(True, True)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from medisynth.errors import ConfigError

log = logging.getLogger(__name__)

PriorKind = Literal["none", "matched", "inverted", "auto"]
PROBABILITIES = np.linspace(0.0, 100.0, 101)


def _percentiles(values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        raise ConfigError("an image has no foreground (every pixel at the background level)")
    levels = np.percentile(values.astype(np.float64), PROBABILITIES)
    # strictly increasing, so np.interp is defined where percentiles tie (clipped intensities)
    return levels + np.arange(len(levels)) * 1e-9


@dataclass(frozen=True)
class HistogramPrior:
    """Maps a scaled source image onto the training target's foreground histogram.

    Attributes:
        target_levels: the training target's foreground percentiles 0, 1, ..., 100 ([-1, 1]
            units), pooled over the training pairs.
        inverted: whether the source's intensity order is reversed before matching.
    """

    target_levels: tuple[float, ...]
    inverted: bool

    def apply(self, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The prior of one scaled ``(C, *spatial)`` source image or volume: ``(1, *spatial)``,
        the first channel matched to the target inside ``mask`` (its foreground), -1 outside."""
        values = np.asarray(source[0], dtype=np.float64)
        levels = _percentiles(values[mask])
        target = np.asarray(self.target_levels, dtype=np.float64)
        out = np.full(values.shape, -1.0, dtype=np.float32)
        out[mask] = np.interp(values[mask], levels, target[::-1] if self.inverted else target)
        return out[None]

    @classmethod
    def fit(
        cls,
        sources: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        kind: PriorKind = "auto",
    ) -> HistogramPrior:
        """The prior of scaled training pairs (same shapes) with the sources' foreground masks.
        ``"auto"`` inverts the source when the inverted prior is closer to the targets (mean
        absolute error in the foreground) than the direct one."""
        if kind == "none":
            raise ConfigError("HistogramPrior.fit needs matched, inverted or auto")
        pooled = np.concatenate([t[0][m] for t, m in zip(targets, masks, strict=True)])
        levels = tuple(float(v) for v in _percentiles(pooled))
        if kind != "auto":
            return cls(levels, kind == "inverted")

        def training_mae(prior: HistogramPrior) -> float:
            diffs = [
                np.abs(prior.apply(s, m)[0][m] - t[0][m])
                for s, t, m in zip(sources, targets, masks, strict=True)
            ]
            return float(np.concatenate(diffs).mean())

        direct, inverted = training_mae(cls(levels, False)), training_mae(cls(levels, True))
        log.info(
            "source prior: %s (training MAE direct %.3f, inverted %.3f)",
            "inverted" if inverted < direct else "direct",
            direct,
            inverted,
        )
        return cls(levels, inverted < direct)

    def to_dict(self) -> dict[str, Any]:
        return {"target_levels": list(self.target_levels), "inverted": self.inverted}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistogramPrior:
        return cls(tuple(float(v) for v in data["target_levels"]), bool(data["inverted"]))
