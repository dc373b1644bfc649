"""The reader-study section of the validation report (``medisynth validate --study STUDY``).

A reader study (:mod:`medisynth.study`) is evidence about the synthetic images from outside the
image sets, so it is not a metric of the registry: it does not run on ``--real`` and
``--synthetic``, is not chosen with ``--metrics``, and adds its own ``reader_study`` section
to ``report.json``, one verdict line, and a "Reader study" part of the HTML page.

The section holds the pooled statistics of :func:`medisynth.study.analysis.summarise`
(accuracy with its Wilson interval, binomial p against chance, sensitivity, specificity, ROC
AUC, Fleiss' kappa), counts, and per-reader statistics under pseudonyms (``reader 1``, ...;
names are personal data and stay in the study). ``sources`` is what the study says its images
were drawn from, and ``match`` says, per side, whether that is the validated set:

- ``same set``: the fingerprints are equal;
- ``same model``: the study's synthetic images and the validated ones come from the same model
  (its ``model_id``), not the same images;
- ``another set`` or ``unknown`` (a study made before medisynth recorded its sources): a
  warning in the report says the study judged other images.

>>> from medisynth.study.store import Answer
>>> rows = [Answer("ann", f"i{k}", "synthetic", None, "real", 3, "", "") for k in range(4)]
>>> data = StudyData(rows, n_real=4, n_synthetic=4, n_invited=2, sources=None)
>>> outcome, notes = study_outcome(data, {})
>>> outcome.section["accuracy"], outcome.section["n_readers"], outcome.verdicts[0].split(' (')[0]
(0.0, 1, 'reader study: readers called synthetic images real more often than chance')
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from medisynth.data.sets import generated_by
from medisynth.study.analysis import StudyData, load_study, plots, pseudonymised, summarise
from medisynth.validate import keys as K
from medisynth.validate.render import number, table
from medisynth.validate.results import Outcome, Section, ValidationResult, jsonable

__all__ = ["ALARMS", "add_reader_study", "load_study", "render_reader_study", "study_outcome"]

#: the beginning of the verdict line that the HTML report marks as an alarm
TOLD_APART = "reader study: readers told synthetic from real"
ALARMS = (TOLD_APART,)

#: the pooled statistics the section and the model card carry (``<name>_ci`` beside accuracy)
POOLED = ("accuracy", "p_value", "sensitivity", "specificity", "auc")


def _stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The statistics of a group of answers in the report's form (``accuracy_ci``)."""
    out: dict[str, Any] = {"n_answers": stats["n"]}
    out.update({name: stats.get(name) for name in POOLED})
    out["accuracy" + K.CI_SUFFIX] = stats.get("ci")
    return out


def _verdict(pooled: Mapping[str, Any], n_readers: int, n_images: int, invited: int) -> str:
    """One line: could the readers tell synthetic from real?"""
    if not pooled["n"]:
        return (
            f"reader study: no answers yet ({n_images} images, {invited} reader(s) invited); "
            "nothing to conclude"
        )
    low, high = pooled["ci"]
    figures = (
        f"accuracy {number(pooled['accuracy'])} [{number(low)}, {number(high)}], "
        f"p = {number(pooled['p_value'])}; {n_readers} reader(s), {pooled['n']} answers"
    )
    if low > 0.5:
        return f"{TOLD_APART} better than chance ({figures})"
    if high < 0.5:
        return (
            f"reader study: readers called synthetic images real more often than chance ({figures})"
        )
    return f"reader study: readers could not tell synthetic from real ({figures})"


def _validated_model(inputs: Mapping[str, Any]) -> str | None:
    """The model that made the validated synthetic set: ``--model``'s, or the generating
    model of a set that medisynth wrote."""
    made = inputs.get(K.MODEL)
    if isinstance(made, Mapping) and made.get("model_id"):
        return str(made["model_id"])
    synthetic = inputs.get(K.SYNTHETIC)
    spec = synthetic.get("spec") if isinstance(synthetic, Mapping) else None
    return generated_by(spec) if isinstance(spec, str) and not spec.startswith("model:") else None


def _match(study: StudyData, inputs: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Per side, whether the study drew from the validated set, and the warnings."""
    if study.sources is None:
        return {K.REAL: "unknown", K.SYNTHETIC: "unknown"}, [
            "reader study: the study does not record which sets its images were drawn from "
            "(made by an earlier medisynth); check by hand that it showed the validated sets"
        ]
    match, notes = {}, []
    for role in (K.REAL, K.SYNTHETIC):
        source = study.sources.get(role, {})
        given = inputs.get(role)
        validated = given.get("fingerprint") if isinstance(given, Mapping) else None
        model = source.get("model_id")
        if validated is not None and source.get("fingerprint") == validated:
            match[role] = "same set"
        elif role == K.SYNTHETIC and model and model == _validated_model(inputs):
            match[role] = "same model"
        else:
            match[role] = "another set"
            notes.append(
                f"reader study: its {role} images were drawn from another set (fingerprint "
                f"{source.get('fingerprint')}) than the validated {role} set "
                f"({validated}); its statistics are about those images"
            )
    return match, notes


def study_outcome(study: StudyData, inputs: Mapping[str, Any]) -> tuple[Outcome, list[str]]:
    """The study's section, verdict line and plot data (anonymised), and the warnings about
    which sets it showed; ``inputs``: the report's ``inputs``."""
    answers = pseudonymised(study.answers)
    summary = summarise(answers)
    fleiss = summary["fleiss"]
    n_images = study.n_real + study.n_synthetic
    section: Section = {
        "n_readers": len(summary["readers"]),
        "n_invited": study.n_invited,
        "n_images": n_images,
        "n_real": study.n_real,
        "n_synthetic": study.n_synthetic,
        **_stats(summary["pooled"]),
        "kappa": fleiss["kappa"],
        "kappa_images": fleiss["images"],
        "level": summary["level"],
        "readers": {name: _stats(stats) for name, stats in summary["readers"].items()},
    }
    match, notes = _match(study, inputs)
    section["sources"] = study.sources or {}
    section["match"] = match
    verdict = _verdict(summary["pooled"], section["n_readers"], n_images, study.n_invited)
    outcome = Outcome(jsonable(section), [verdict], arrays={K.READER_STUDY: (summary, answers)})
    return outcome, notes


def add_reader_study(result: ValidationResult, study: StudyData) -> None:
    """Add the study's section, verdict line, warnings and plot data to a validation result."""
    outcome, notes = study_outcome(study, result.report[K.INPUTS])
    result.report[K.READER_STUDY] = outcome.section
    result.report[K.VERDICTS].extend(outcome.verdicts)
    result.report[K.WARNINGS].extend(notes)
    result.arrays.update(outcome.arrays)


def render_reader_study(section: Section, arrays: Mapping[str, Any]) -> str:
    """The "Reader study" part of the HTML page: pooled statistics, per-reader table, plots."""
    pooled = {k: v for k, v in section.items() if k not in ("readers", "sources", "match")}
    parts = [table(pooled)]
    if not section["n_answers"]:
        parts.append("<p>No answers yet: the readers have not answered any image.</p>")
    if section["readers"]:
        parts.append("<h3>Per reader (pseudonyms)</h3>" + table(section["readers"]))
    parts.append("<h3>Sets shown</h3>" + table({"match": section["match"],
                                               "sources": section["sources"]}))  # fmt: skip
    summary, answers = arrays.get(K.READER_STUDY, (None, []))
    if summary is not None:
        parts.extend(f'<img alt="reader study plot" src="{html.escape(uri)}">'
                     for uri in plots(summary, answers))  # fmt: skip
    return "".join(parts)
