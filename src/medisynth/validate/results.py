"""What a validation run produces: the report (strict JSON) and the arrays its HTML draws.

The protocol (:mod:`medisynth.validate.protocol`) computes these and the HTML writer
(:mod:`medisynth.validate.report`) renders them; both import this module, never each other.

>>> jsonable({"a": float("nan"), "b": (np.int64(2), np.float32(0.5))})
{'a': None, 'b': [2, 0.5]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: one metric's entry in ``report.json``'s ``metrics`` object
Section = dict[str, Any]


@dataclass
class ValidationResult:
    """The JSON report and the arrays the HTML report draws."""

    report: dict[str, Any]
    arrays: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one metric adds to a report: its section, verdict lines, data findings, and the
    arrays its HTML figures draw (keyed by the metric's name)."""

    section: Section
    verdicts: list[str] = field(default_factory=list)
    findings: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)


def jsonable(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    return value
