"""The validation protocol: read the sets, run the chosen metrics, write report.json + report.html.

:func:`run_validation` resolves the inputs once (:class:`~medisynth.validate.context.RunInputs`:
sizes checked, one intensity window, features per extractor computed once), skips the chosen
metrics whose inputs are absent (a note in the report's warnings), lets the others check their
inputs, computes them in registry order (:data:`~medisynth.validate.registry.METRICS`) and
assembles the report from their sections, verdict lines and data findings.

Roles of the sets:

- ``real``: the real reference for distribution metrics (FID, KID, FRD, PRDC), the target of
  paired metrics, and the test split of the utility experiments (classification: labels;
  segmentation: masks);
- ``synthetic``: the images under test (with labels / masks for the utility experiments);
- ``train``: the data the generator was trained on (memorisation, relative FD, utility);
- ``heldout``: real images the generator never saw (calibration of near-copies, C_T, relative FD).
  When it is not given but ``train`` is, and ``real`` is a different set than ``train``, ``real``
  serves as held-out set (the report says so).

Diversity compares within-set nearest-neighbour distances of equal-size random subsets of the
synthetic set and of the real training set (``real`` without ``train``), since NN distances shrink
as a set grows.

Confidence intervals (``ValidateOptions.bootstrap`` resamples, seeded by ``seed``; see
:mod:`medisynth.metrics.bootstrap`) sit beside their values as ``<name>_ci: [low, high]``, with a
``bootstrap`` entry per metric: precision/recall/density/coverage (each given the set that
defines its k-NN balls; see :mod:`medisynth.metrics.prdc`), the near-copy fraction, the
seed-averaged utility AUC (``auc.mean_ci``) and, with ``fid_bootstrap``, the FID.

>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> rng = np.random.default_rng(0)
>>> real = rng.integers(0, 256, (40, 12, 12), dtype=np.uint8)
>>> np.savez(folder / "real.npz", train_images=real, train_labels=np.zeros(40),
...          test_images=real[:20], test_labels=np.zeros(20))
>>> np.savez(folder / "syn.npz", train_images=np.repeat(real[:2], 20, axis=0),
...          train_labels=np.zeros(40))
>>> options = ValidateOptions(metrics=("prdc", "diversity"), extractor="pixels", progress=False)
>>> report = validate(f"{folder}/real.npz:train", f"{folder}/syn.npz", folder / "out", options)
>>> report["metrics"]["diversity"]["verdict"]
'collapsed'
>>> sorted(p.name for p in (folder / "out").iterdir())
['report.html', 'report.json']
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medisynth import __version__
from medisynth.data.sets import ImageSet, load_image_set
from medisynth.errors import ConfigError
from medisynth.files import atomic_write_text
from medisynth.validate import keys as K
from medisynth.validate.context import RunInputs
from medisynth.validate.metric import Metric
from medisynth.validate.model_set import synthetic_set
from medisynth.validate.options import MetricSettings
from medisynth.validate.reader_study import add_reader_study, load_study
from medisynth.validate.registry import DEFAULT_METRICS, METRICS
from medisynth.validate.report import write_html
from medisynth.validate.results import Outcome, ValidationResult, jsonable

__all__ = ["SMALL_SET", "ValidateOptions", "ValidationResult", "run_validation", "validate"]

#: images per set below which distribution metrics (FID, KID, FRD, PRDC) get a warning
SMALL_SET = 50


@dataclass
class ValidateOptions(MetricSettings):
    """Settings of one validation run (all have defaults): the metrics to run, by name in
    :data:`~medisynth.validate.registry.METRICS`, and what they read."""

    metrics: tuple[str, ...] = DEFAULT_METRICS

    def check(self) -> None:
        """Refuse no or unknown metrics, unknown extractors, out-of-range numbers."""
        known = ", ".join(METRICS)
        if not self.metrics:
            raise ConfigError(f"no metrics selected; choose some of {known}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; known: {known}")
        super().check()


def _select(inputs: RunInputs, options: ValidateOptions) -> list[Metric]:
    """The chosen metrics whose inputs are present, in registry order (the others skipped with
    a note); each checks its inputs; distribution metrics on small sets get a warning."""
    chosen = [metric for name, metric in METRICS.items() if name in options.metrics]
    selected = []
    for metric in chosen:
        reason = metric.missing(inputs)
        if reason is None:
            selected.append(metric)
        else:
            inputs.warnings.append(reason)
    for metric in selected:
        metric.check(inputs, options)
    distribution = sorted(m.name for m in selected if m.distribution)
    n_real, n_synthetic = (len(inputs.sets[r].images) for r in (K.REAL, K.SYNTHETIC))
    if distribution and min(n_real, n_synthetic) < SMALL_SET:
        inputs.warnings.append(
            f"{', '.join(distribution)} on {n_real} real and {n_synthetic} synthetic images: "
            f"below {SMALL_SET} per set, distances are biased upwards and PRDC neighbourhoods "
            "are coarse; compare only with a reference computed at the same sizes"
        )
    return selected


def run_validation(
    real: ImageSet,
    synthetic: ImageSet,
    train: ImageSet | None = None,
    heldout: ImageSet | None = None,
    options: ValidateOptions | None = None,
    mask: np.ndarray | None = None,
) -> ValidationResult:
    """Run the chosen metrics on loaded sets; see :func:`validate` for files in and out.

    ``mask`` (non-zero = inside), one per real image, restricts the paired metrics.
    """
    options = options or ValidateOptions()
    options.check()
    sets = {K.REAL: real, K.SYNTHETIC: synthetic, K.TRAIN: train, K.HELDOUT: heldout}
    inputs = RunInputs.resolve(sets, options.window, mask, options.cache_dir, options.progress)
    selected = _select(inputs, options)
    inputs.prefetch(options.extractor, {r for m in selected for r in m.needs.features})
    outcomes: dict[str, Outcome] = {}
    for metric in selected:
        with inputs.steps(metric.name):
            done = {name: outcome.section for name, outcome in outcomes.items()}
            outcomes[metric.name] = metric.compute(inputs, options, done)
    return _result(inputs, options, outcomes)


def _result(
    inputs: RunInputs, options: ValidateOptions, outcomes: dict[str, Outcome]
) -> ValidationResult:
    """The report of a run and the arrays its HTML draws."""
    findings: dict[str, Any] = {}
    arrays: dict[str, Any] = {"unit": inputs.unit}
    for outcome in outcomes.values():
        findings.update(outcome.findings)
        arrays.update(outcome.arrays)
    report = {
        K.VERSION: __version__,
        K.CREATED: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        K.INPUTS: {role: s.describe() for role, s in inputs.sets.items()},
        K.INTENSITY_WINDOW: list(inputs.window),
        K.OPTIONS: {**asdict(options), "metrics": sorted(outcomes)},
        K.VERDICTS: [line for outcome in outcomes.values() for line in outcome.verdicts],
        K.METRICS: {name: outcome.section for name, outcome in outcomes.items()},
        K.DATA_FINDINGS: findings,
        K.WARNINGS: inputs.warnings,
        K.TIMINGS: inputs.steps.timings,
    }
    return ValidationResult(jsonable(report), arrays)


def validate(
    real: str,
    synthetic: str | None,
    output: str | Path,
    options: ValidateOptions | None = None,
    train: str | None = None,
    heldout: str | None = None,
    mask: str | None = None,
    real_masks: str | None = None,
    synthetic_masks: str | None = None,
    train_masks: str | None = None,
    model: str | Path | None = None,
    study: str | Path | None = None,
) -> dict[str, Any]:
    """Read the sets named by specs, run the metrics, write ``report.json`` and ``report.html``.

    Args:
        real, synthetic, train, heldout: set specs (``file.npz:split``, folder, ``.npy``).
        mask: a set spec of masks (non-zero inside), one per real image, for paired metrics.
        real_masks, synthetic_masks, train_masks: set specs of segmentation masks (non-zero =
            foreground), one per image of that set in its order, for the segmentation metric;
            npz sets need none when they hold ``{split}_masks``.
        output: the report folder (created; existing reports in it are replaced atomically).
        options: metrics and settings.
        model: the model package under test (``medisynth train``'s ``model/`` folder): named in
            the report's inputs, and its card gets the report's summary (``attach_metrics``,
            atomic) once the report is written. With ``synthetic`` None the synthetic set is
            generated from it in memory: as many images as ``train`` (else ``real``), in its
            class balance for a conditional model, at the real images' size, seed
            ``options.seed``.
        study: a reader study folder (``medisynth study``): its statistics join the report
            (``reader_study``; see :mod:`medisynth.validate.reader_study`) and the card.

    Returns:
        The report (the content of ``report.json``).
    """
    from medisynth.package import attach_metrics, load_package  # torch: loaded when used

    options = options or ValidateOptions()
    options.check()
    if synthetic is None and model is None:
        raise ConfigError(
            "no synthetic set: give --synthetic SET, or --model PACKAGE to generate it from a "
            "trained model"
        )
    if Path(output).exists() and not Path(output).is_dir():
        raise ConfigError(f"{output}: exists and is not a folder; give a folder for the report")
    package = None if model is None else load_package(model)
    study_data = None if study is None else load_study(study)  # refused before any metric
    real_set = load_image_set(real, masks=real_masks)
    train_set = load_image_set(train, masks=train_masks) if train else None
    synthetic_images, made = synthetic_set(
        synthetic, synthetic_masks, package, real_set, train_set, options.seed, options.progress
    )
    result = run_validation(
        real_set,
        synthetic_images,
        train_set,
        load_image_set(heldout) if heldout else None,
        options=options,
        mask=load_image_set(mask).images if mask else None,
    )
    if made is not None:
        result.report[K.INPUTS][K.MODEL] = jsonable(made)
    if study_data is not None:
        add_reader_study(result, study_data)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "report.json", json.dumps(result.report, indent=2) + "\n")
    write_html(result, output / "report.html")
    if package is not None:
        attach_metrics(package.path, result.report)
    return result.report
