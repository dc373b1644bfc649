"""The validation protocol: read the sets, run the chosen metrics, write report.json + report.html.

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
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medisynth.errors import ConfigError
from medisynth.files import atomic_write_text
from medisynth.metrics.bootstrap import ci_key, interval
from medisynth.validate import keys as K
from medisynth.validate.inputs import ImageSet, intensity_window, load_image_set, to_unit

if TYPE_CHECKING:
    from medisynth.package import ModelPackage

log = logging.getLogger(__name__)
#: images per set below which distribution metrics (FID, KID, FRD, PRDC) get a warning
SMALL_SET = 50


@dataclass
class ValidateOptions:
    """Settings of one validation run (all have defaults)."""

    metrics: tuple[str, ...] = K.DEFAULT_METRICS
    extractor: str = "inception"
    radiomics_extractor: str = "radiomics"
    window: str = "auto"
    k: int = 5
    percentile: float = 5.0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seeds: int = 3
    epochs: int = 20
    k_pairs: int = 8
    cache_dir: str | None = None
    progress: bool = True
    seed: int = 0
    #: bootstrap resamples of the confidence intervals of density, the near-copy fraction and
    #: the utility AUC (0: no intervals, PRDC's closed-form ones included)
    bootstrap: int = 200
    #: half-sample resamples of the FID interval (0: none; one eigendecomposition each)
    fid_bootstrap: int = 0

    def check(self) -> None:
        from medisynth.metrics.features import known_extractors

        if not self.metrics:
            raise ConfigError(f"no metrics selected; choose some of {', '.join(K.ALL_METRICS)}")
        unknown = [m for m in self.metrics if m not in K.ALL_METRICS]
        if unknown:
            raise ConfigError(
                f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(K.ALL_METRICS)}"
            )
        names = {name.partition(":")[0] for name in known_extractors()}
        for spec in (self.extractor, self.radiomics_extractor):
            if isinstance(spec, str) and spec.partition(":")[0] not in names:
                raise ConfigError(
                    f"unknown feature extractor {spec!r}; known: {', '.join(known_extractors())}"
                )
        if not 0 < self.percentile < 50:
            raise ConfigError(f"percentile must be in (0, 50), got {self.percentile}")
        if self.k < 1 or self.seeds < 1 or self.epochs < 1:
            raise ConfigError("k, seeds and epochs must be at least 1")
        if self.bootstrap < 0 or self.fid_bootstrap < 0:
            raise ConfigError(
                f"bootstrap resamples must be >= 0 (0 disables), got bootstrap={self.bootstrap},"
                f" fid_bootstrap={self.fid_bootstrap}"
            )


@dataclass
class ValidationResult:
    """The JSON report and the arrays the HTML report draws."""

    report: dict[str, Any]
    arrays: dict[str, Any] = field(default_factory=dict)


def _jsonable(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


class _Steps:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        log.info("validate: %s ...", name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(rng.choice(len(x), n, replace=False))]


def _bootstrap_info(ci: dict[str, Any], method: str, **extra: Any) -> dict[str, Any]:
    """The report's ``bootstrap`` entry: how a metric's intervals were made."""
    from medisynth.metrics.bootstrap import LEVEL, N_RESAMPLES

    return {N_RESAMPLES: ci[N_RESAMPLES], LEVEL: ci[LEVEL], "method": method, **extra}


def _check_segmentation(
    real: ImageSet,
    synthetic: ImageSet,
    train: ImageSet | None,
    metrics: set[str],
    warnings: list[str],
) -> None:
    """Drop the segmentation metric with a warning when masks are missing; refuse bad sizes."""
    from medisynth.metrics.utility import SegmenterSettings

    sources = [s for s in (train, synthetic) if s is not None and s.masks is not None]
    if real.masks is None or not sources:
        warnings.append(
            "segmentation skipped: it needs masks on --real (the test set) and on --train "
            "and/or --synthetic ({split}_masks in an npz, or --real-masks / --train-masks / "
            "--synthetic-masks)"
        )
        metrics.discard(K.SEGMENTATION)
        return
    if synthetic.masks is None:
        warnings.append("segmentation: the synthetic set has no masks; only real training runs")
    elif train is None or train.masks is None:
        warnings.append("segmentation: no training masks; only synthetic training runs")
    multiple = SegmenterSettings().size_multiple
    if any(size % multiple for size in real.images.shape[2:]):
        raise ConfigError(
            f"segmentation: the U-Net needs image sizes divisible by {multiple}, got "
            f"{tuple(real.images.shape[2:])}; crop or pad the sets, or leave out segmentation"
        )


def _segmentation(
    real: ImageSet,
    synthetic: ImageSet,
    train: ImageSet | None,
    unit: dict[str, np.ndarray],
    options: ValidateOptions,
) -> dict[str, Any]:
    """The segmentation entry of the report: Dice per training condition, settings, verdict."""
    from medisynth.metrics.utility import (
        SEGMENTATION_RULE,
        SegmenterSettings,
        segmentation_utility,
        segmentation_verdict,
    )

    assert real.masks is not None
    settings = SegmenterSettings()
    seeds = tuple(range(options.seed, options.seed + options.seeds))
    conditions = segmentation_utility(
        None if train is None or train.masks is None else (unit[K.TRAIN], train.masks),
        None if synthetic.masks is None else (unit[K.SYNTHETIC], synthetic.masks),
        (unit[K.REAL], real.masks),
        seeds=seeds,
        epochs=options.epochs,
        settings=settings,
        progress=options.progress,
    )
    return {
        K.CONDITIONS: conditions,
        "n_test": len(real.images),
        "test_foreground_fraction": float((real.masks != 0).mean()),
        "seeds": list(seeds),
        "epochs": options.epochs,
        K.SETTINGS: settings.describe(),
        "dice_definition": "per real test image, prediction thresholded at 0.5; averaged "
        "over images, then mean and std over seeds",
        K.VERDICT: segmentation_verdict(conditions),
        K.RULE: SEGMENTATION_RULE,
    }


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
    from medisynth import __version__
    from medisynth.metrics import frechet, memorization, prdc
    from medisynth.metrics.features import extract_features, get_extractor

    options = options or ValidateOptions()
    options.check()
    metrics = set(options.metrics)
    warnings: list[str] = []
    if synthetic.images.shape[1:] != real.images.shape[1:]:
        raise ConfigError(
            f"synthetic images are {tuple(synthetic.images.shape[1:])} (C, ...) but real images "
            f"{tuple(real.images.shape[1:])}; resample one set to the other's size first"
        )
    for role, other in ((K.TRAIN, train), (K.HELDOUT, heldout)):
        if other is not None and other.images.shape[1:] != real.images.shape[1:]:
            raise ConfigError(
                f"{role} images are {tuple(other.images.shape[1:])} but real images "
                f"{tuple(real.images.shape[1:])}"
            )
    if heldout is None and train is not None and real.fingerprint != train.fingerprint:
        heldout = real
        warnings.append("no --heldout given: the real set serves as held-out data")
    if K.MEMORIZATION in metrics and train is None:
        warnings.append("memorization skipped: it needs --train")
        metrics.discard(K.MEMORIZATION)
    if K.UTILITY in metrics and (train is None or train.labels is None or real.labels is None):
        warnings.append("utility skipped: it needs a labelled --train and a labelled --real")
        metrics.discard(K.UTILITY)
    if K.SEGMENTATION in metrics:
        _check_segmentation(real, synthetic, train, metrics, warnings)
    distribution = sorted(metrics & {K.FID, K.KID, K.FRD, K.PRDC})
    n_real, n_synthetic = len(real.images), len(synthetic.images)
    if distribution and min(n_real, n_synthetic) < SMALL_SET:
        warnings.append(
            f"{', '.join(distribution)} on {n_real} real and {n_synthetic} synthetic images: "
            f"below {SMALL_SET} per set, distances are biased upwards and PRDC neighbourhoods "
            "are coarse; compare only with a reference computed at the same sizes"
        )
    if K.PAIRED in metrics and n_real != n_synthetic:
        raise ConfigError(
            f"paired metrics need as many synthetic as real images "
            f"({n_synthetic} vs {n_real}), paired by index"
        )

    sets = {K.REAL: real, K.SYNTHETIC: synthetic, K.TRAIN: train, K.HELDOUT: heldout}
    present = {role: s for role, s in sets.items() if s is not None}
    window = intensity_window(
        [real, *[s for r, s in present.items() if r != K.REAL]], options.window
    )
    unit = {role: to_unit(s.images, window) for role, s in present.items()}
    step = _Steps()
    out: dict[str, Any] = {}
    verdicts: list[str] = []
    findings: dict[str, Any] = {}
    arrays: dict[str, Any] = {"unit": unit}
    rng = np.random.default_rng(options.seed)
    is_3d = real.is_3d

    # ---- features on the chosen extractor
    features: dict[str, np.ndarray] = {}
    if metrics & {K.FID, K.KID, K.PRDC, K.MEMORIZATION}:
        extractor = get_extractor(options.extractor)
        roles = [K.REAL, K.SYNTHETIC]
        if K.MEMORIZATION in metrics or K.FID in metrics:
            roles += [r for r in (K.TRAIN, K.HELDOUT) if r in present]
        for role in dict.fromkeys(roles):
            same = [r for r in features if present[r] is present[role]]
            if same:  # e.g. the real set doubling as held-out set
                features[role] = features[same[0]]
                continue
            with step(f"features {role}"):
                features[role] = extract_features(
                    unit[role],
                    extractor,
                    cache_dir=options.cache_dir,
                    fingerprint=f"{present[role].fingerprint}:{window}",
                    progress=options.progress,
                    desc=f"{extractor.name} features ({role})",
                )
        planes = 3 if is_3d and not extractor.native_3d else 1

    if K.FID in metrics:
        with step(K.FID):
            value = frechet.fid(features[K.REAL], features[K.SYNTHETIC])
            entry: dict[str, Any] = {
                K.VALUE: value,
                K.EXTRACTOR: options.extractor,
                "n_real": len(features[K.REAL]),
                "n_synthetic": len(features[K.SYNTHETIC]),
            }
            if planes == 3:
                blocks = {r: np.split(features[r], 3, axis=1) for r in (K.REAL, K.SYNTHETIC)}
                entry[K.PER_PLANE] = {
                    name: frechet.fid(blocks[K.REAL][i], blocks[K.SYNTHETIC][i])
                    for i, name in enumerate(("axial", "coronal", "sagittal"))
                }
            if K.TRAIN in features and K.HELDOUT in features:
                fd_syn = frechet.fid(features[K.SYNTHETIC], features[K.TRAIN])
                fd_held = frechet.fid(features[K.HELDOUT], features[K.TRAIN])
                entry[K.RELATIVE_FD] = {
                    K.FD_SYNTHETIC_TRAIN: fd_syn,
                    K.FD_HELDOUT_TRAIN: fd_held,
                    K.VALUE: frechet.relative_fd(fd_syn, fd_held),
                }
            ci = frechet.fid_bootstrap(
                features[K.REAL], features[K.SYNTHETIC],
                n_resamples=options.fid_bootstrap, seed=options.seed,
            )  # fmt: skip
            if ci is not None:
                entry[K.VALUE_CI] = interval(ci)
                entry[K.BOOTSTRAP] = _bootstrap_info(
                    ci,
                    "halves of the synthetic set drawn without replacement, real statistics "
                    "fixed; interval shifted to the full-set value",
                )
            out[K.FID] = entry
            label = "FID" if options.extractor == "inception" else "FD"
            verdicts.append(f"{label} ({options.extractor}) synthetic vs real: {value:.2f}")
    if K.KID in metrics:
        with step(K.KID):
            mean, std = frechet.kid(
                features[K.REAL],
                features[K.SYNTHETIC],
                subsets=options.kid_subsets,
                subset_size=options.kid_subset_size,
                seed=options.seed,
            )
            out[K.KID] = {
                K.KID_MEAN: mean,
                K.KID_STD: std,
                K.EXTRACTOR: options.extractor,
                "subsets": options.kid_subsets,
                "subset_size": min(
                    options.kid_subset_size, len(features[K.REAL]), len(features[K.SYNTHETIC])
                ),
            }
    if K.FRD in metrics:
        with step(K.FRD):
            name = options.radiomics_extractor
            try:
                radiomics = get_extractor(name)
            except ConfigError as err:
                if name != "radiomics":
                    raise
                warnings.append(f"FRD uses radiomics-lite, not pyradiomics ({err})")
                name, radiomics = "radiomics-lite", get_extractor("radiomics-lite")
            f_real, f_syn = (
                extract_features(
                    unit[r], radiomics, cache_dir=options.cache_dir,
                    fingerprint=f"{present[r].fingerprint}:{window}", progress=options.progress,
                    desc=f"{name} features ({r})",
                )
                for r in (K.REAL, K.SYNTHETIC)
            )  # fmt: skip
            squared = frechet.frd(f_real, f_syn)
            out[K.FRD] = {
                K.VALUE: frechet.frd_log(squared),
                K.SQUARED_DISTANCE: squared,
                K.EXTRACTOR: name,
                "n_features": f_real.shape[1],
                "convention": (
                    "log(d_F^2) (FRDv1 / frd-score default); features z-scored with the real "
                    "set's mean and std (ddof 0), real-constant features dropped"
                ),
            }
    if K.PRDC in metrics:
        with step(K.PRDC):
            k = min(options.k, len(features[K.REAL]) - 1, len(features[K.SYNTHETIC]) - 1)
            terms = prdc.prdc_terms(features[K.REAL], features[K.SYNTHETIC], k=k)
            out[K.PRDC] = {**terms.scores(), "k": k, K.EXTRACTOR: options.extractor}
            cis = terms.intervals(options.bootstrap, seed=options.seed)
            if cis is not None:
                for name, ci in cis.items():
                    out[K.PRDC][ci_key(name)] = interval(ci)
                out[K.PRDC][K.BOOTSTRAP] = _bootstrap_info(
                    cis[prdc.DENSITY], prdc.INTERVAL_TARGET,
                    intervals={name: ci[prdc.METHOD] for name, ci in cis.items()},
                    n_real=len(terms.recalled), n_synthetic=len(terms.in_real_ball),
                )  # fmt: skip
    if K.DIVERSITY in metrics:
        with step(K.DIVERSITY):
            reference = unit[K.TRAIN] if K.TRAIN in unit else unit[K.REAL]
            n = min(len(reference), len(unit[K.SYNTHETIC]))
            d_real = prdc.within_set_nn_distances(_subsample(reference, n, rng))
            d_syn = prdc.within_set_nn_distances(_subsample(unit[K.SYNTHETIC], n, rng))
            scores = out.get(K.PRDC, {})
            verdict, reasons = prdc.diversity_verdict(
                float(np.median(d_syn)),
                float(np.median(d_real)),
                scores.get(prdc.RECALL),
                scores.get(prdc.COVERAGE),
            )
            out[K.DIVERSITY] = {
                K.SYNTHETIC_NN_MEDIAN: float(np.median(d_syn)),
                K.REAL_NN_MEDIAN: float(np.median(d_real)),
                K.NN_RATIO: float(np.median(d_syn) / max(np.median(d_real), 1e-12)),
                "n_per_set": n,
                "reference": K.TRAIN if K.TRAIN in unit else K.REAL,
                "space": "pixels in [0, 1], L2",
                K.VERDICT: verdict,
                K.REASONS: reasons,
            }
            arrays["diversity"] = (d_real, d_syn)
            verdicts.append(f"diversity: {verdict} ({'; '.join(reasons)})")
    if K.MEMORIZATION in metrics:
        assert train is not None
        with step(K.MEMORIZATION):
            result = memorization.memorization(
                unit[K.SYNTHETIC],
                unit[K.TRAIN],
                unit.get(K.HELDOUT),
                features=(features[K.SYNTHETIC], features[K.TRAIN], features.get(K.HELDOUT)),
                percentile=options.percentile,
                seed=options.seed,
                progress=options.progress,
            )
            verdict, reasons = result.verdict()
            out[K.MEMORIZATION] = {
                K.PIXELS: result.pixel.summary(options.k_pairs),
                K.FEATURES: None if result.feature is None else result.feature.summary(0),
                K.EXTRACTOR: options.extractor,
                K.VERDICT: verdict,
                K.REASONS: reasons,
            }
            for space_key, space in ((K.PIXELS, result.pixel), (K.FEATURES, result.feature)):
                if space is None:
                    continue
                ci = space.near_copy_ci(options.bootstrap, seed=options.seed)
                if ci is not None:
                    out[K.MEMORIZATION][space_key][K.NEAR_COPY_FRACTION_CI] = interval(ci)
                    out[K.MEMORIZATION][K.BOOTSTRAP] = _bootstrap_info(
                        ci, "synthetic images resampled with replacement against the fixed "
                        "threshold (the threshold's own uncertainty is not included)",
                    )  # fmt: skip
            arrays["memorization"] = result
            verdicts.append(f"memorization: {verdict} ({'; '.join(reasons)})")
            pairs = [{"heldout": i, "train": j} for i, j, _ in result.heldout_train_duplicates]
            findings[K.HELDOUT_TRAIN_DUPLICATES] = pairs
            findings[K.TRAIN_DUPLICATES] = [
                {"train_a": i, "train_b": j} for i, j, _ in result.train_duplicates
            ]
            if pairs:
                names = ", ".join(
                    f"heldout[{p['heldout']}] = train[{p['train']}]" for p in pairs[:10]
                )
                verdicts.append(
                    f"data finding: {len(pairs)} held-out image(s) duplicate training images "
                    f"({names}); they leak into training and bias memorisation figures"
                )
            if result.train_duplicates:
                verdicts.append(
                    f"data finding: {len(result.train_duplicates)} duplicate pair(s) within train"
                )
    if K.PAIRED in metrics:
        from medisynth.metrics.paired import paired_metrics

        with step(K.PAIRED):
            if mask is not None and np.shape(mask)[0] != len(real.images):
                raise ConfigError(
                    f"{np.shape(mask)[0]} masks for {len(real.images)} real images; "
                    "give one mask per image"
                )
            out[K.PAIRED] = paired_metrics(
                unit[K.SYNTHETIC], unit[K.REAL], data_range=1.0,
                mask=None if mask is None else np.asarray(mask) > 0,
            )  # fmt: skip
            out[K.PAIRED]["data_range_note"] = (
                f"images scaled to [0, 1] from the window {window}; data_range 1.0"
            )
            out[K.PAIRED]["masked"] = mask is not None
    if K.UTILITY in metrics:
        from medisynth.metrics.utility import classification_utility

        assert train is not None and train.labels is not None and real.labels is not None
        with step(K.UTILITY):
            val = None
            if heldout is not None and heldout is not real and heldout.labels is not None:
                val = (unit[K.HELDOUT], heldout.labels)
            out[K.UTILITY] = classification_utility(
                (unit[K.TRAIN], train.labels),
                None if synthetic.labels is None else (unit[K.SYNTHETIC], synthetic.labels),
                (unit[K.REAL], real.labels),
                val=val,
                seeds=tuple(range(options.seed, options.seed + options.seeds)),
                epochs=options.epochs,
                progress=options.progress,
                bootstrap=options.bootstrap,
                bootstrap_seed=options.seed,
            )
    if K.SEGMENTATION in metrics:
        assert real.masks is not None
        with step(K.SEGMENTATION):
            out[K.SEGMENTATION] = _segmentation(real, synthetic, train, unit, options)
            verdicts.append(f"segmentation utility: {out[K.SEGMENTATION][K.VERDICT]}")
    report = {
        K.VERSION: __version__,
        K.CREATED: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        K.INPUTS: {role: s.describe() for role, s in present.items()},
        K.INTENSITY_WINDOW: list(window),
        K.OPTIONS: {**asdict(options), "metrics": sorted(metrics)},
        K.VERDICTS: verdicts,
        K.METRICS: out,
        K.DATA_FINDINGS: findings,
        K.WARNINGS: warnings,
        K.TIMINGS: step.timings,
    }
    return ValidationResult(_jsonable(report), arrays)


def _model_name(package: ModelPackage) -> str:
    return str(package.card.get("model_id", package.path.name))


def _synthetic_from_model(
    package: ModelPackage, real: ImageSet, train: ImageSet | None, seed: int, progress: bool
) -> tuple[ImageSet, dict[str, Any]]:
    """Generate (in memory) as many images as ``train`` (else ``real``) holds, in its class
    balance for a conditional model, at the real images' size; and how they were made."""
    from medisynth.apply.generate import generate_arrays, output_class_names

    name = _model_name(package)
    if package.data.source_intensity_map is not None:
        raise ConfigError(
            f"{package.path} is an image-to-image model ({package.card.get('family')}): it "
            "translates images rather than generating them; translate the real inputs with "
            "`medisynth translate` and give the result as --synthetic"
        )
    channels, spatial = real.images.shape[1], tuple(real.images.shape[2:])
    if package.data.channels != channels:
        raise ConfigError(
            f"the model {name} makes {package.data.channels}-channel images but the real "
            f"images have {channels} channel(s)"
        )
    reference = train if train is not None else real
    class_names = output_class_names(package)
    balance = balance_from = None
    if package.conditional:
        k = len(class_names)
        source = next((s for s in (train, real) if s is not None and s.labels is not None), None)
        if source is not None:
            labels = np.asarray(source.labels).astype(np.int64)
            if labels.min() < 0 or labels.max() >= k:
                raise ConfigError(
                    f"{source.spec}: labels run from {labels.min()} to {labels.max()} but the "
                    f"model {name} has {k} classes ({', '.join(class_names)})"
                )
            weights = np.bincount(labels, minlength=k).tolist()
            balance_from = source.spec
        else:  # no labelled set: the model's own training balance
            weights = [package.data.class_counts.get(c, 1) for c in range(k)]
            balance_from = "model card"
        balance = ",".join(str(w) for w in weights)
    images, labels_out = generate_arrays(
        package, len(reference.images), balance, seed=seed, progress=progress,
        spatial_shape=spatial,
    )  # fmt: skip
    counts = np.bincount(labels_out, minlength=len(class_names)).tolist()
    made = {
        "path": str(package.path),
        "model_id": name,
        "family": package.card.get("family", ""),
        "generated": True,
        "n": len(images),
        "seed": seed,
        "class_counts": dict(zip(class_names, counts, strict=True)),
        "balance_from": balance_from,
        "model_size": list(package.data.spatial_shape),
        "resized_to": None if tuple(package.data.spatial_shape) == spatial else list(spatial),
    }
    synthetic = ImageSet(
        f"model:{name}",
        images.astype(np.float32),
        labels_out if package.conditional else None,
        package.data.source_dtype,
        f"{name}:seed={seed}:counts={counts}:size={list(spatial)}",
    )
    return synthetic, made


def _synthetic_set(
    synthetic: str | None,
    synthetic_masks: str | None,
    package: ModelPackage | None,
    real: ImageSet,
    train: ImageSet | None,
    options: ValidateOptions,
) -> tuple[ImageSet, dict[str, Any] | None]:
    """The synthetic set (read, or generated from ``package``) and the report's model entry."""
    if synthetic is not None:
        made = None
        if package is not None:
            made = {
                "path": str(package.path),
                "model_id": _model_name(package),
                "family": package.card.get("family", ""),
                "generated": False,
            }
        return load_image_set(synthetic, masks=synthetic_masks), made
    assert package is not None, "validate() checks that a set or a model is given"
    if synthetic_masks is not None:
        raise ConfigError("synthetic masks need a synthetic set (--synthetic)")
    return _synthetic_from_model(package, real, train, options.seed, options.progress)


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

    Returns:
        The report (the content of ``report.json``).
    """
    from medisynth.package import attach_metrics, load_package
    from medisynth.validate.report import write_html

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
    real_set = load_image_set(real, masks=real_masks)
    train_set = load_image_set(train, masks=train_masks) if train else None
    synthetic_set, made = _synthetic_set(
        synthetic, synthetic_masks, package, real_set, train_set, options
    )
    result = run_validation(
        real_set,
        synthetic_set,
        train_set,
        load_image_set(heldout) if heldout else None,
        options=options,
        mask=load_image_set(mask).images if mask else None,
    )
    if made is not None:
        result.report[K.INPUTS][K.MODEL] = _jsonable(made)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "report.json", json.dumps(result.report, indent=2) + "\n")
    write_html(result, output / "report.html")
    if package is not None:
        attach_metrics(package.path, result.report)
    return result.report
