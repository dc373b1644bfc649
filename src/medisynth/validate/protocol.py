"""The validation protocol: read the sets, run the chosen metrics, write report.json + report.html.

Roles of the sets:

- ``real``: the real reference for distribution metrics (FID, KID, FRD, PRDC), the target of
  paired metrics, and the test split of the utility experiment;
- ``synthetic``: the images under test (with labels for the utility experiment);
- ``train``: the data the generator was trained on (memorisation, relative FD, utility);
- ``heldout``: real images the generator never saw (calibration of near-copies, C_T, relative FD).
  When it is not given but ``train`` is, and ``real`` is a different set than ``train``, ``real``
  serves as held-out set (the report says so).

Diversity compares within-set nearest-neighbour distances of equal-size random subsets of the
synthetic set and of the real training set (``real`` without ``train``), since NN distances shrink
as a set grows.

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
from typing import Any

import numpy as np

from medisynth.errors import ConfigError
from medisynth.files import atomic_write_text
from medisynth.validate import keys as K
from medisynth.validate.inputs import ImageSet, intensity_window, load_image_set, to_unit

log = logging.getLogger(__name__)


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

    def check(self) -> None:
        unknown = [m for m in self.metrics if m not in K.ALL_METRICS]
        if unknown:
            raise ConfigError(
                f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(K.ALL_METRICS)}"
            )
        if not 0 < self.percentile < 50:
            raise ConfigError(f"percentile must be in (0, 50), got {self.percentile}")
        if self.k < 1 or self.seeds < 1 or self.epochs < 1:
            raise ConfigError("k, seeds and epochs must be at least 1")


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
    if K.PAIRED in metrics and len(real.images) != len(synthetic.images):
        raise ConfigError(
            f"paired metrics need as many synthetic as real images "
            f"({len(synthetic.images)} vs {len(real.images)}), paired by index"
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
            out[K.FRD] = {
                K.VALUE: frechet.frd(f_real, f_syn),
                K.EXTRACTOR: name,
                "n_features": f_real.shape[1],
                "convention": "z-scored with the real set's mean/std; no log transform",
            }
    if K.PRDC in metrics:
        with step(K.PRDC):
            k = min(options.k, len(features[K.REAL]) - 1, len(features[K.SYNTHETIC]) - 1)
            out[K.PRDC] = {
                **prdc.prdc(features[K.REAL], features[K.SYNTHETIC], k=k),
                "k": k,
                K.EXTRACTOR: options.extractor,
            }
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
            )
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


def validate(
    real: str,
    synthetic: str,
    output: str | Path,
    options: ValidateOptions | None = None,
    train: str | None = None,
    heldout: str | None = None,
    mask: str | None = None,
) -> dict[str, Any]:
    """Read the sets named by specs, run the metrics, write ``report.json`` and ``report.html``.

    Args:
        real, synthetic, train, heldout: set specs (``file.npz:split``, folder, ``.npy``).
        mask: a set spec of masks (non-zero inside), one per real image, for paired metrics.
        output: the report folder (created; existing reports in it are replaced atomically).
        options: metrics and settings.

    Returns:
        The report (the content of ``report.json``).
    """
    from medisynth.validate.report import write_html

    options = options or ValidateOptions()
    options.check()
    result = run_validation(
        load_image_set(real),
        load_image_set(synthetic),
        load_image_set(train) if train else None,
        load_image_set(heldout) if heldout else None,
        options=options,
        mask=load_image_set(mask).images if mask else None,
    )
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "report.json", json.dumps(result.report, indent=2) + "\n")
    write_html(result, output / "report.html")
    return result.report
