"""The report of a utility curve (:mod:`medisynth.validate.curve`): ``curve.json``, ``curve.csv``
and ``curve.html`` (AUC against data fraction per condition, the paired GAN-over-classic
difference per fraction, one verdict line per fraction, the transforms of each condition).

Intervals of a condition at a fraction: with several repetitions (GAN seeds), the 95%
t-interval of the mean over them of each cell's seed-averaged AUC (training, subset and GAN
variability); with one, that cell's bootstrap interval over the test images. The paired
comparison pools every repetition's and classifier seed's test predictions at a fraction
(:func:`~medisynth.metrics.comparison.paired_auc_difference`).

>>> [round(v, 3) for v in interval_over_seeds([0.80, 0.82, 0.84])]
[0.82, 0.77, 0.87]
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from medisynth.files import atomic_write_text
from medisynth.metrics.comparison import gain_verdict, paired_auc_difference
from medisynth.metrics.utility import BASELINE, GAIN, GAIN_WORDS
from medisynth.validate.render import figure, img, png, table

CONFIDENCE = 0.95
#: a cell's test labels and each condition's test probabilities (seeds, images, classes)
PREDICTIONS_FILE = "predictions.npz"


def interval_over_seeds(values: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and 95% t-interval of per-seed values (no interval from a single value)."""
    from scipy.stats import t

    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if len(x) == 0:
        return float("nan"), None, None
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None, None
    half = float(t.ppf((1 + CONFIDENCE) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def _condition_summary(cells: list[dict[str, Any]], condition: str) -> dict[str, Any]:
    """A condition at one fraction: mean over repetitions, its interval and how it was made."""
    entries = [c["conditions"][condition] for c in cells if condition in c["conditions"]]
    per_seed = [e["auc"]["mean"] for e in entries]
    mean, low, high = interval_over_seeds(per_seed)
    kind = f"95% t-interval over {len(per_seed)} GAN seeds"
    if len(per_seed) == 1:
        ci = entries[0]["auc"].get("mean_ci")
        low, high = (None, None) if ci is None else (ci[0], ci[1])
        kind = "95% bootstrap interval over the test images (one GAN seed)"
    return {
        "auc": mean,
        "auc_interval": None if low is None else [low, high],
        "interval": kind if low is not None else "none",
        "auc_per_seed": per_seed,
        "acc": float(np.mean([e["acc"]["mean"] for e in entries])),
        "n_train": entries[0]["n_train"],
    }


def _pooled_difference(cells: list[dict[str, Any]], out: Path, n_resamples: int) -> Any:
    """The paired AUC difference GAN over classic at one fraction, all cells' models pooled."""
    labels, gain, baseline = None, [], []
    for cell in cells:
        with np.load(out / "cells" / cell["name"] / PREDICTIONS_FILE) as saved:
            if GAIN not in saved.files or BASELINE not in saved.files:
                return None
            labels = saved["labels"]
            gain.append(saved[GAIN])
            baseline.append(saved[BASELINE])
    return paired_auc_difference(
        labels, np.concatenate(gain), np.concatenate(baseline),  # type: ignore[arg-type]
        n_resamples=n_resamples, seed=0,
    )  # fmt: skip


def summarise(
    cells: list[dict[str, Any]], out: Path, paired_resamples: int, classifier_seeds: int
) -> dict[str, Any]:
    """The curve's report from its cells (in fraction order): per fraction the conditions, the
    paired difference (``paired_resamples``) and the verdict line."""
    conditions = list(cells[0]["conditions"])
    fractions = []
    for fraction in dict.fromkeys(c["fraction"] for c in cells):
        here = [c for c in cells if c["fraction"] == fraction]
        entry: dict[str, Any] = {
            "fraction": fraction,
            "n_real": here[0]["subset"]["n"],
            "class_counts": here[0]["subset"]["class_counts"],
            "seeds": [c["seed"] for c in here],
            "conditions": {name: _condition_summary(here, name) for name in conditions},
            "cells": [f"cells/{c['name']}" for c in here],
        }
        difference = _pooled_difference(here, out, paired_resamples)
        head = (
            f"fraction {fraction:g} ({entry['n_real']} real training images, {len(here)} GAN "
            f"seed(s) x {classifier_seeds} classifier seed(s))"
        )
        if difference is None:
            entry["verdict"] = f"{head}: no GAN-over-classic comparison (a condition is missing)"
        else:
            entry["paired_difference"] = {"baseline": BASELINE, **difference.to_dict()}
            verdict = gain_verdict(difference, "AUC", *GAIN_WORDS)
            entry["verdict"] = f"{head}: {verdict}"
        fractions.append(entry)
    return {
        "metric": "auc",
        "conditions": conditions,
        "augmentation": {n: cells[0]["conditions"][n]["augmentation"] for n in conditions},
        "fractions": fractions,
        "verdicts": [f["verdict"] for f in fractions],
        "cells": [
            {k: c[k] for k in ("name", "fraction", "seed", "training", "synthetic", "timings_s")}
            for c in cells
        ],
    }


# --------------------------------------------------------------------------- files
def write_report(report: dict[str, Any], out: Path) -> None:
    """``curve.json``, ``curve.csv`` and ``curve.html`` in ``out`` (atomic writes)."""
    atomic_write_text(out / "curve.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "curve.csv", curve_csv(report))
    atomic_write_text(out / "curve.html", curve_html(report))


CSV_COLUMNS = (
    "fraction", "n_real", "seed", "condition", "n_train", "auc", "auc_low", "auc_high", "acc",
    "paired_difference", "paired_low", "paired_high", "paired_p",
)  # fmt: skip


def curve_csv(report: dict[str, Any]) -> str:
    """One row per fraction, condition and GAN seed, and a row ``seed = all`` with the mean and
    interval over seeds (and, for the GAN-over-classic condition, the paired difference)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in report["fractions"]:
        paired = entry.get("paired_difference")
        for name, summary in entry["conditions"].items():
            for seed, value in zip(entry["seeds"], summary["auc_per_seed"], strict=True):
                row = [entry["fraction"], entry["n_real"], seed, name, summary["n_train"], value]
                writer.writerow(row + [""] * (len(CSV_COLUMNS) - len(row)))
            low, high = summary["auc_interval"] or ("", "")
            extra = ["", "", "", ""]
            if name == GAIN and paired is not None:
                extra = [paired["difference"], *paired["difference_ci"], paired["p_value"]]
            writer.writerow([entry["fraction"], entry["n_real"], "all", name, summary["n_train"],
                             summary["auc"], low, high, summary["acc"], *extra])  # fmt: skip
    return buffer.getvalue()


def curve_figure(report: dict[str, Any]) -> str:
    """AUC against fraction per condition (left) and the paired difference (right), as an
    embedded PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.ticker import NullFormatter

    entries = report["fractions"]
    fractions = np.array([e["fraction"] for e in entries], np.float64)
    fig = figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    names = report["conditions"]
    for i, name in enumerate(names):
        shift = 1 + 0.025 * (i - (len(names) - 1) / 2)  # side by side on the log axis
        means = np.array([e["conditions"][name]["auc"] for e in entries], np.float64)
        bounds = [
            e["conditions"][name]["auc_interval"] or [m, m]
            for e, m in zip(entries, means, strict=True)
        ]
        err = np.abs(np.array(bounds, np.float64).T - means)
        left.errorbar(fractions * shift, means, yerr=err, marker="o", capsize=3, label=name)
    left.set_ylabel("AUC on the real test set")
    left.legend(fontsize=8)
    paired = [e.get("paired_difference") for e in entries]
    if any(p is not None for p in paired):
        diff = np.array([np.nan if p is None else p["difference"] for p in paired])
        bounds = [
            [d, d] if p is None else p["difference_ci"] for p, d in zip(paired, diff, strict=True)
        ]
        err = np.abs(np.array(bounds, np.float64).T - diff)
        right.errorbar(fractions, diff, yerr=err, marker="s", capsize=3, color="C4")
    right.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    right.set_ylabel(f"AUC: {GAIN} minus {BASELINE}\n(paired, 95% CI)")
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xticks(fractions)
        axis.set_xticklabels([f"{f:g}" for f in fractions])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("fraction of the real training set")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    return img(png(fig), "utility curve")


def curve_html(report: dict[str, Any]) -> str:
    """The self-contained HTML page of the curve."""
    esc = html.escape
    parts = ["<h1>medisynth utility curve</h1>",
             f"<p>{esc(str(report.get('created', '')))} - medisynth "
             f"{esc(str(report.get('medisynth_version', '')))}</p>",
             "<h2>Did GAN augmentation add value beyond classic augmentation?</h2><ul>",
             *(f"<li>{esc(line)}</li>" for line in report["verdicts"]), "</ul>",
             curve_figure(report), "<h2>AUC per fraction and condition</h2>"]  # fmt: skip
    head = "".join(f"<th>{esc(n)}</th>" for n in report["conditions"])
    rows = [f"<tr><th>fraction (real images)</th>{head}</tr>"]
    for entry in report["fractions"]:
        cells = []
        for name in report["conditions"]:
            summary = entry["conditions"][name]
            shown = f"{summary['auc']:.3f}"
            if summary["auc_interval"]:
                shown += " [{:.3f}, {:.3f}]".format(*summary["auc_interval"])
            cells.append(f"<td>{shown}</td>")
        rows.append(f"<tr><th>{entry['fraction']:g} ({entry['n_real']})</th>{''.join(cells)}</tr>")
    parts.append("<table>" + "".join(rows) + "</table>")
    kinds = sorted({s["interval"] for e in report["fractions"] for s in e["conditions"].values()})
    parts.append(f"<p><small>intervals: {esc('; '.join(kinds))}</small></p>")
    parts.append("<h2>Transforms of each condition</h2><table>")
    for name, transforms in report["augmentation"].items():
        parts.append(f"<tr><th>{esc(name)}</th><td>{esc('; '.join(transforms))}</td></tr>")
    parts.append("</table><h2>Cells</h2>")
    links = [f'<a href="{esc(c)}/validation/report.html">{esc(c)}</a>'
             for e in report["fractions"] for c in e["cells"]]  # fmt: skip
    parts.append("<p>" + " | ".join(links) + "</p>" + table({"cells": report["cells"]}))
    parts.append("<h2>Settings and data</h2>" + table(report["settings"]) + table(report["data"]))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>medisynth utility curve"
        "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 6px;"
        "font-size:13px;text-align:left;vertical-align:top}img{max-width:100%}</style>"
        f"</head><body>{''.join(parts)}</body></html>\n"
    )
