"""The self-contained HTML report: verdicts, tables, sample grids, histograms, closest pairs.

Every figure is a PNG drawn by matplotlib (Agg) and embedded as base64, so the one file can be
mailed or archived. Volumes are shown by their central axial slice.

>>> import numpy as np
>>> tile(np.zeros((3, 1, 4, 5, 6))).shape   # central axial slices of volumes
(3, 5, 6)
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medisynth.files import atomic_write_text
from medisynth.validate import keys as K

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from medisynth.validate.protocol import ValidationResult


def tile(images: np.ndarray) -> np.ndarray:
    """Displayable images from ``(N, C, ...)``: ``(N, H, W)`` grey or ``(N, H, W, 3)`` colour."""
    if images.ndim == 5:
        images = images[:, :, images.shape[2] // 2]
    if images.shape[1] == 3:
        return np.moveaxis(images, 1, -1)
    return images[:, 0]


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _grid(images: np.ndarray, title: str, n: int = 36) -> str:
    shown = tile(images[:n])
    cols = int(np.ceil(np.sqrt(len(shown))))
    rows = int(np.ceil(len(shown) / cols))
    fig = _figure(cols * 0.9, rows * 0.9 + 0.4)
    fig.suptitle(title, fontsize=9)
    for i, image in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.axis("off")
    return _img(_png(fig), title)


def _pairs(
    left: np.ndarray, right: np.ndarray, pairs: list[tuple[int, int, float]], names: tuple[str, str]
) -> str:
    if not pairs:
        return "<p>none</p>"
    a, b = tile(left[[i for i, _, _ in pairs]]), tile(right[[j for _, j, _ in pairs]])
    fig = _figure(len(pairs) * 1.1, 2.6)
    for col, (i, j, d) in enumerate(pairs):
        for row, (image, name, index) in enumerate(((a[col], names[0], i), (b[col], names[1], j))):
            ax = fig.add_subplot(2, len(pairs), row * len(pairs) + col + 1)
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"{name}[{index}]" + (f"\nd={d:.3g}" if row == 0 else ""), fontsize=7)
            ax.axis("off")
    return _img(_png(fig), f"{names[0]} vs {names[1]} pairs")


def _histogram(
    series: dict[str, np.ndarray], title: str, xlabel: str, line: float | None = None
) -> str:
    fig = _figure(5.5, 3.0)
    ax = fig.add_subplot(1, 1, 1)
    values = np.concatenate(list(series.values()))
    bins = np.linspace(0.0, float(values.max()) * 1.05 + 1e-9, 40).tolist()
    for label, data in series.items():
        ax.hist(
            data,
            bins=bins,
            alpha=0.55,
            density=True,
            label=f"{label} (median {np.median(data):.3g})",
        )
    if line is not None:
        ax.axvline(line, color="k", linestyle="--", label=f"threshold {line:.3g}")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.legend(fontsize=7)
    return _img(_png(fig), title)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "n/a"


def _table(data: dict[str, Any]) -> str:
    """Nested tables of a report entry; a value with its bootstrap interval beside it
    (``name`` and ``name_ci``) shows as one cell.

    >>> _table({"precision": 0.92, "precision_ci": [0.89, 0.95]})
    '<table><tr><th>precision</th><td>0.92 [0.89, 0.95]</td></tr></table>'
    """
    rows = []
    for key, value in data.items():
        name = str(key)
        if name.endswith(K.CI_SUFFIX) and name[: -len(K.CI_SUFFIX)] in data:
            continue  # shown beside its value
        ci = data.get(name + K.CI_SUFFIX)
        if isinstance(value, list) and len(value) > 12:
            value = f"[{len(value)} values]"
        if isinstance(value, dict):
            cell = _table(value)
        elif isinstance(ci, list) and len(ci) == 2 and isinstance(value, int | float | None):
            cell = f"{_number(value)} [{_number(ci[0])}, {_number(ci[1])}]"
        elif isinstance(value, float):
            cell = f"{value:.4g}"
        else:
            cell = html.escape(json.dumps(value) if isinstance(value, list) else str(value))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _segmentation_table(entry: dict[str, Any]) -> str:
    """Dice per training condition (rows), the verdict with its rule, then the settings.

    >>> entry = {K.CONDITIONS: {"real": {K.DICE: {"mean": 0.8, "std": 0.01, "per_seed": [0.8]},
    ...          "n_train": 10}}, K.VERDICT: "v", K.RULE: "r", K.SETTINGS: {}}
    >>> "<td>0.800 ± 0.010</td>" in _segmentation_table(entry)
    True
    """
    rows = ["<tr><th>trained on</th><th>Dice (real test), mean ± std over seeds</th>"
            "<th>per seed</th><th>n train</th></tr>"]  # fmt: skip
    for condition, scores in entry[K.CONDITIONS].items():
        dice = scores[K.DICE]
        per_seed = ", ".join(f"{v:.3f}" for v in dice["per_seed"] if v is not None)
        rows.append(
            f"<tr><th>{html.escape(condition)}</th><td>{dice['mean']:.3f} ± {dice['std']:.3f}</td>"
            f"<td>{per_seed}</td><td>{scores['n_train']}</td></tr>"
        )
    rest = {k: v for k, v in entry.items() if k not in (K.CONDITIONS, K.VERDICT, K.RULE)}
    return (
        "<table>" + "".join(rows) + "</table>"
        f"<p>{html.escape(str(entry[K.VERDICT]))}<br><small>rule: "
        f"{html.escape(str(entry[K.RULE]))}</small></p>" + _table(rest)
    )


_STYLE = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.3em 0}th,td{border:1px solid #ccc;padding:2px 6px;
text-align:left;font-size:13px;vertical-align:top}th{background:#f4f4f4}
.verdicts li{margin:.3em 0}.bad{color:#b00;font-weight:bold}img{max-width:100%}
"""


_ALARMS = (
    "diversity: collapsed",
    "diversity: reduced",
    "memorization: possible copying",
    "data finding",
)


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
    parts.append("<h2>Inputs</h2>" + _table(report[K.INPUTS]))
    parts.append(f"<p>intensity window mapped to [0, 1]: {report[K.INTENSITY_WINDOW]}</p>")
    parts.append("<h2>Samples</h2>")
    for role in (K.REAL, K.SYNTHETIC):
        if role in unit:
            parts.append(_grid(unit[role], f"{role} (first {min(36, len(unit[role]))})"))
    metrics = report[K.METRICS]
    parts.append("<h2>Metrics</h2>")
    for name, value in metrics.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        if name == K.SEGMENTATION and isinstance(value, dict):
            parts.append(_segmentation_table(value))
        else:
            parts.append(_table(value) if isinstance(value, dict) else html.escape(str(value)))
        if name == K.DIVERSITY and "diversity" in arrays:
            d_real, d_syn = arrays["diversity"]
            parts.append(
                _histogram(
                    {f"real ({value['reference']})": d_real, "synthetic": d_syn},
                    "within-set nearest-neighbour distance",
                    "L2 distance, pixels in [0, 1]",
                )
            )
        if name == K.MEMORIZATION and "memorization" in arrays:
            mem = arrays["memorization"]
            series = {"synthetic to train": mem.pixel.synthetic_to_train}
            if mem.pixel.heldout_to_train is not None:
                series["held-out to train"] = mem.pixel.heldout_to_train
            parts.append(
                _histogram(series, "distance to the nearest training image", "L2, pixels in [0, 1]",
                           mem.pixel.threshold)
            )  # fmt: skip
            parts.append("<h4>Closest synthetic-training pairs (pixels)</h4>")
            parts.append(
                _pairs(unit[K.SYNTHETIC], unit[K.TRAIN], mem.pixel.closest_pairs(8),
                       ("synthetic", "train"))
            )  # fmt: skip
            if mem.heldout_train_duplicates:
                parts.append("<h4>Data finding: held-out images identical to training images</h4>")
                parts.append(
                    _pairs(unit[K.HELDOUT], unit[K.TRAIN], mem.heldout_train_duplicates[:8],
                           ("heldout", "train"))
                )  # fmt: skip
    if report.get(K.DATA_FINDINGS):
        parts.append("<h2>Data findings</h2>" + _table(report[K.DATA_FINDINGS]))
    parts.append("<h2>Options and timings</h2>" + _table(report[K.OPTIONS]))
    parts.append(_table(report[K.TIMINGS]))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>medisynth validation</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    atomic_write_text(path, page)
