"""The statistics of a reader study, per reader and pooled, and the report that shows them.

Spotting synthetic images is the task: a *positive* is a synthetic image, so sensitivity is the
fraction of synthetic images called synthetic and specificity the fraction of real images called
real. Accuracy comes with a Wilson 95% interval and a two-sided binomial test against chance
(0.5). The ROC AUC uses the answers as a rating scale: "synthetic" with confidence ``c`` scores
``c``, "real" with confidence ``c`` scores ``-c``. Fleiss' kappa measures agreement between
readers on the images every reader answered. An image's *fooled rate* is the fraction of readers
who called that synthetic image real.

>>> rows = [Answer("a", f"i{k}", t, None, t, 5, "", "") for k, t in enumerate(TRUTHS)]
>>> summary = summarise(rows)["pooled"]
>>> summary["accuracy"], summary["n"]
(1.0, 2)
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medisynth.errors import ReadError
from medisynth.files import atomic_path
from medisynth.study.store import (
    IMAGES,
    TRUTHS,
    Answer,
    image_table,
    load_answers,
    open_study,
    readers,
    study_sources,
)

#: the confidence interval level of every accuracy
LEVEL = 0.95


def rating(answer: Answer) -> int:
    """The rating-scale score of an answer: ``+confidence`` for synthetic, ``-confidence`` for
    real."""
    return answer.confidence if answer.answer == "synthetic" else -answer.confidence


def reader_stats(answers: Sequence[Answer]) -> dict[str, Any]:
    """Accuracy (Wilson interval, binomial p against 0.5), sensitivity, specificity and ROC AUC
    of a group of answers."""
    from scipy.stats import binomtest
    from sklearn.metrics import roc_auc_score
    from statsmodels.stats.proportion import proportion_confint

    n = len(answers)
    correct = sum(a.answer == a.truth for a in answers)
    stats: dict[str, Any] = {"n": n, "correct": correct}
    if n == 0:
        return stats | {"accuracy": None, "ci": None, "p_value": None, "sensitivity": None,
                        "specificity": None, "auc": None}  # fmt: skip
    low, high = proportion_confint(correct, n, alpha=1 - LEVEL, method="wilson")
    synthetic = [a for a in answers if a.truth == "synthetic"]
    real = [a for a in answers if a.truth == "real"]
    truths = [a.truth == "synthetic" for a in answers]
    auc = (
        float(roc_auc_score(truths, [rating(a) for a in answers])) if 0 < sum(truths) < n else None
    )
    stats |= {
        "accuracy": correct / n,
        "ci": [float(low), float(high)],
        "p_value": float(binomtest(correct, n, 0.5).pvalue),
        "sensitivity": _fraction(synthetic, "synthetic"),
        "specificity": _fraction(real, "real"),
        "auc": auc,
    }
    return stats


def _fraction(answers: Sequence[Answer], called: str) -> float | None:
    return sum(a.answer == called for a in answers) / len(answers) if answers else None


def fleiss(answers: Sequence[Answer]) -> dict[str, Any]:
    """Fleiss' kappa across readers on the images every reader answered (None with fewer than
    two readers or no such image)."""
    from statsmodels.stats.inter_rater import fleiss_kappa

    by_image: dict[str, dict[str, str]] = defaultdict(dict)
    for a in answers:
        by_image[a.image][a.reader] = a.answer
    names = {a.reader for a in answers}
    common = sorted(i for i, calls in by_image.items() if set(calls) == names)
    if len(names) < 2 or not common:
        return {"kappa": None, "images": len(common), "readers": len(names)}
    table = np.array([[list(by_image[i].values()).count(c) for c in TRUTHS] for i in common])
    kappa = float(fleiss_kappa(table, method="fleiss"))
    return {"kappa": None if np.isnan(kappa) else kappa, "images": len(common),
            "readers": len(names)}  # fmt: skip


def fooled_rates(answers: Sequence[Answer]) -> dict[str, dict[str, Any]]:
    """Per synthetic image: how many readers answered it and the fraction who called it real."""
    calls: dict[str, list[str]] = defaultdict(list)
    for a in answers:
        if a.truth == "synthetic":
            calls[a.image].append(a.answer)
    return {
        image: {"readers": len(c), "fooled": c.count("real") / len(c)}
        for image, c in sorted(calls.items())
    }


def summarise(answers: Sequence[Answer]) -> dict[str, Any]:
    """Every statistic of a study: per reader, pooled, per class, Fleiss' kappa, fooled rates."""
    per_reader: dict[str, list[Answer]] = defaultdict(list)
    per_class: dict[str, list[Answer]] = defaultdict(list)
    for a in answers:
        per_reader[a.reader].append(a)
        if a.label is not None:
            per_class[str(a.label)].append(a)
    return {
        "level": LEVEL,
        "readers": {name: reader_stats(rows) for name, rows in sorted(per_reader.items())},
        "pooled": reader_stats(answers),
        "classes": {label: reader_stats(rows) for label, rows in sorted(per_class.items())},
        "fleiss": fleiss(answers),
        "fooled": fooled_rates(answers),
    }


def pseudonymised(answers: Sequence[Answer]) -> list[Answer]:
    """The answers with every reader renamed ``reader 1``, ``reader 2``, ... (numbered by
    accuracy, then number of answers, so the numbers say nothing of the names) and no comments
    or times: what a report that leaves the study may show."""
    groups: dict[str, list[Answer]] = defaultdict(list)
    for a in answers:
        groups[a.reader].append(a)

    def rank(name: str) -> tuple[float, int]:
        rows = groups[name]
        return sum(a.answer == a.truth for a in rows) / len(rows), len(rows)

    names = {name: f"reader {i + 1}" for i, name in enumerate(sorted(groups, key=rank))}
    return [replace(a, reader=names[a.reader], comment="", time="") for a in answers]


@dataclass(frozen=True)
class StudyData:
    """A study's answers and what it holds: images by truth, invited readers, and what the
    images were drawn from (``sources``, None for a study made before medisynth recorded it)."""

    answers: list[Answer]
    n_real: int
    n_synthetic: int
    n_invited: int
    sources: dict[str, dict[str, Any]] | None


def load_study(study: str | Path) -> StudyData:
    """Read a study's answers and counts.

    Raises:
        ReadError: ``study`` is not a readable reader study.
    """
    conn = open_study(study)
    try:
        truths = [truth for _, truth, _, _ in image_table(conn)]
        return StudyData(
            load_answers(conn),
            truths.count("real"),
            truths.count("synthetic"),
            len(readers(conn)),
            study_sources(conn),
        )
    except (sqlite3.Error, ValueError) as err:  # a damaged table or sources record
        raise ReadError(study, f"not a readable reader study ({err})") from err
    finally:
        conn.close()


# --------------------------------------------------------------------------- the report
def analyze_study(study: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``report.json``, ``answers.csv`` and ``report.html`` of ``study`` into ``out``;
    returns the summary."""
    study, out = Path(study), Path(out)
    answers = load_study(study).answers
    summary = summarise(answers)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    with atomic_path(out / "answers.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["reader", "image", "truth", "label", "answer", "confidence", "comment",
                         "time"])  # fmt: skip
        for a in answers:
            writer.writerow([a.reader, a.image, a.truth, "" if a.label is None else a.label,
                             a.answer, a.confidence, a.comment, a.time])  # fmt: skip
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(_html(summary, answers, study / IMAGES))
    return summary


def _png(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def plots(summary: dict[str, Any], answers: Sequence[Answer]) -> list[str]:
    """The accuracy (with intervals) and ROC plots of a summary, as PNG data URIs (none
    without answers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    figures = []
    names = [n for n, s in summary["readers"].items() if s["accuracy"] is not None]
    groups = [*names, "pooled"]
    stats = [summary["readers"][n] for n in names] + [summary["pooled"]]
    if summary["pooled"]["accuracy"] is not None:
        fig, ax = plt.subplots(figsize=(max(4, len(groups) * 0.8), 3))
        acc = np.array([s["accuracy"] for s in stats])
        ci = np.array([s["ci"] for s in stats])
        ax.errorbar(range(len(groups)), acc, yerr=[acc - ci[:, 0], ci[:, 1] - acc], fmt="o")
        ax.axhline(0.5, color="grey", linestyle="--", label="chance")
        ax.set_xticks(range(len(groups)), groups, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy (95% Wilson)")
        figures.append(_png(fig))
        fig, ax = plt.subplots(figsize=(4, 4))
        for name in groups:
            rows = [a for a in answers if name == "pooled" or a.reader == name]
            truths = [a.truth == "synthetic" for a in rows]
            if 0 < sum(truths) < len(rows):
                fpr, tpr, _ = roc_curve(truths, [rating(a) for a in rows])
                ax.plot(fpr, tpr, label=name)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity (synthetic spotted)")
        if ax.get_legend_handles_labels()[0]:  # no curve without both truths answered
            ax.legend(fontsize="small")
        figures.append(_png(fig))
    return figures


def _thumb(images: Path, image_id: str) -> str:
    path = images / f"{image_id}.png"
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" width="96" alt="{html.escape(image_id)}">'


def _html(summary: dict[str, Any], answers: Sequence[Answer], images: Path) -> str:
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    rows = []
    for name, s in [*summary["readers"].items(), ("pooled", summary["pooled"])]:
        ci = "-" if s["ci"] is None else f"{s['ci'][0]:.3f}-{s['ci'][1]:.3f}"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{s['n']}</td><td>{fmt(s['accuracy'])}</td>"
            f"<td>{ci}</td><td>{fmt(s['p_value'])}</td><td>{fmt(s['sensitivity'])}</td>"
            f"<td>{fmt(s['specificity'])}</td><td>{fmt(s['auc'])}</td></tr>"
        )
    classes = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{s['n']}</td><td>{fmt(s['accuracy'])}</td>"
        f"<td>{fmt(s['sensitivity'])}</td><td>{fmt(s['specificity'])}</td></tr>"
        for label, s in summary["classes"].items()
    )
    fooled = sorted(summary["fooled"].items(), key=lambda item: -item[1]["fooled"])

    def gallery(items: list[tuple[str, dict[str, Any]]]) -> str:
        return "".join(
            f"<figure>{_thumb(images, image)}<figcaption>{r['fooled']:.2f} fooled"
            f"</figcaption></figure>"
            for image, r in items
        )

    kappa = summary["fleiss"]
    figures = "".join(f'<img src="{p}" alt="plot">' for p in plots(summary, answers))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Reader study</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px}}figure{{display:inline-block}}</style>
</head><body><h1>Reader study</h1>
<table><tr><th>reader</th><th>n</th><th>accuracy</th><th>95% CI</th><th>p (vs chance)</th>
<th>sensitivity</th><th>specificity</th><th>AUC</th></tr>{"".join(rows)}</table>
<p>Fleiss' kappa: {fmt(kappa["kappa"])} ({kappa["readers"]} readers, {kappa["images"]} images
answered by all)</p>
{
        "<h2>Per class</h2><table><tr><th>class</th><th>n</th><th>accuracy</th><th>sensitivity</th>"
        "<th>specificity</th></tr>" + classes + "</table>"
        if classes
        else ""
    }
{figures}
<h2>Most convincing synthetic images</h2>{gallery(fooled[:8])}
<h2>Least convincing synthetic images</h2>{gallery(fooled[::-1][:8])}
</body></html>
"""
