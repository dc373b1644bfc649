"""The self-contained HTML report: verdicts, tables, sample grids, and each metric's figures.

Every figure is a PNG drawn by matplotlib (Agg) and embedded as base64, so the one file can be
mailed or archived. Volumes are shown by their central axial slice. Each metric renders its own
section (:meth:`medisynth.validate.metric.Metric.render`); the verdict lines that its ``alarms``
begin with are marked.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from medisynth.files import atomic_write_text
from medisynth.validate import keys as K
from medisynth.validate.reader_study import ALARMS as STUDY_ALARMS
from medisynth.validate.reader_study import render_reader_study
from medisynth.validate.registry import METRICS
from medisynth.validate.render import grid, table
from medisynth.validate.results import ValidationResult

_STYLE = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.3em 0}th,td{border:1px solid #ccc;padding:2px 6px;
text-align:left;font-size:13px;vertical-align:top}th{background:#f4f4f4}
.verdicts li{margin:.3em 0}.bad{color:#b00;font-weight:bold}img{max-width:100%}
"""


#: beginnings of verdict lines shown as alarms (from every metric's declaration, and the
#: reader study's)
_ALARMS = tuple(alarm for metric in METRICS.values() for alarm in metric.alarms) + STUDY_ALARMS


def write_html(result: ValidationResult, path: str | Path) -> None:
    """Write the report of ``result`` as one self-contained HTML file (atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    report, arrays = result.report, result.arrays
    unit: dict[str, np.ndarray] = arrays.get("unit", {})
    parts = ["<h1>medisynth validation report</h1>"]
    parts.append(f"<p>{html.escape(str(report.get(K.CREATED, '')))} - medisynth "
                 f"{html.escape(str(report.get(K.VERSION, '')))}</p>")  # fmt: skip
    parts.append("<h2>Verdicts</h2><ul class='verdicts'>")
    for line in report[K.VERDICTS]:
        bad = line.startswith(_ALARMS)
        parts.append(f"<li class='{'bad' if bad else ''}'>{html.escape(line)}</li>")
    parts.append("</ul>")
    for warning in report.get(K.WARNINGS, []):
        parts.append(f"<p><em>note: {html.escape(warning)}</em></p>")
    parts.append("<h2>Inputs</h2>" + table(report[K.INPUTS]))
    parts.append(f"<p>intensity window mapped to [0, 1]: {report[K.INTENSITY_WINDOW]}</p>")
    parts.append("<h2>Samples</h2>")
    for role in (K.REAL, K.SYNTHETIC):
        if role in unit:
            parts.append(grid(unit[role], f"{role} (first {min(36, len(unit[role]))})"))
    metrics = report[K.METRICS]
    parts.append("<h2>Metrics</h2>")
    for name, value in metrics.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        if not isinstance(value, dict):
            parts.append(html.escape(str(value)))
        elif name in METRICS:
            parts.append(METRICS[name].render(value, arrays))
        else:
            parts.append(table(value))
    if K.READER_STUDY in report:
        parts.append("<h2>Reader study</h2>")
        parts.append(render_reader_study(report[K.READER_STUDY], arrays))
    if report.get(K.DATA_FINDINGS):
        parts.append("<h2>Data findings</h2>" + table(report[K.DATA_FINDINGS]))
    parts.append("<h2>Options and timings</h2>" + table(report[K.OPTIONS]))
    parts.append(table(report[K.TIMINGS]))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>medisynth validation</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    atomic_write_text(path, page)
