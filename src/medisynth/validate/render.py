"""HTML pieces of the validation report: tables of report entries and figures as embedded PNGs.

Every figure is drawn by matplotlib (Agg) and embedded as base64, so the one page can be mailed
or archived. Volumes are shown by their central axial slice.

>>> tile(np.zeros((3, 1, 4, 5, 6))).shape   # central axial slices of volumes
(3, 5, 6)
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from medisynth.validate import keys as K

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def tile(images: np.ndarray) -> np.ndarray:
    """Displayable images from ``(N, C, ...)``: ``(N, H, W)`` grey or ``(N, H, W, 3)`` colour."""
    if images.ndim == 5:
        images = images[:, :, images.shape[2] // 2]
    if images.shape[1] == 3:
        return np.moveaxis(images, 1, -1)
    return images[:, 0]


def figure(width: float, height: float) -> Figure:
    """A matplotlib figure of that size in inches (100 dpi), outside pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def png(fig: Figure) -> str:
    """The figure as a base64 PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def img(data: str, alt: str) -> str:
    """An ``<img>`` tag embedding a base64 PNG."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def grid(images: np.ndarray, title: str, n: int = 36) -> str:
    """The first ``n`` images (in ``[0, 1]``) in a square grid."""
    shown = tile(images[:n])
    cols = int(np.ceil(np.sqrt(len(shown))))
    rows = int(np.ceil(len(shown) / cols))
    fig = figure(cols * 0.9, rows * 0.9 + 0.4)
    fig.suptitle(title, fontsize=9)
    for i, image in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.axis("off")
    return img(png(fig), title)


def pair_figure(
    left: np.ndarray, right: np.ndarray, pairs: list[tuple[int, int, float]], names: tuple[str, str]
) -> str:
    """Image ``left[i]`` above ``right[j]`` for each pair ``(i, j, distance)``."""
    if not pairs:
        return "<p>none</p>"
    a, b = tile(left[[i for i, _, _ in pairs]]), tile(right[[j for _, j, _ in pairs]])
    fig = figure(len(pairs) * 1.1, 2.6)
    for col, (i, j, d) in enumerate(pairs):
        for row, (image, name, index) in enumerate(((a[col], names[0], i), (b[col], names[1], j))):
            ax = fig.add_subplot(2, len(pairs), row * len(pairs) + col + 1)
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"{name}[{index}]" + (f"\nd={d:.3g}" if row == 0 else ""), fontsize=7)
            ax.axis("off")
    return img(png(fig), f"{names[0]} vs {names[1]} pairs")


def histogram(
    series: dict[str, np.ndarray], title: str, xlabel: str, line: float | None = None
) -> str:
    """Overlaid density histograms of the series, with an optional threshold line."""
    fig = figure(5.5, 3.0)
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
    return img(png(fig), title)


def number(value: Any) -> str:
    """A number with 4 significant digits, ``n/a`` for anything else."""
    return f"{value:.4g}" if isinstance(value, int | float) else "n/a"


def table(data: dict[str, Any]) -> str:
    """Nested tables of a report entry; a value with its bootstrap interval beside it
    (``name`` and ``name_ci``) shows as one cell.

    >>> table({"precision": 0.92, "precision_ci": [0.89, 0.95]})
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
            cell = table(value)
        elif isinstance(ci, list) and len(ci) == 2 and isinstance(value, int | float | None):
            cell = f"{number(value)} [{number(ci[0])}, {number(ci[1])}]"
        elif isinstance(value, float):
            cell = f"{value:.4g}"
        else:
            cell = html.escape(json.dumps(value) if isinstance(value, list) else str(value))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"
