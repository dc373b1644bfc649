"""The data-fraction utility curve: does GAN augmentation help beyond classic augmentation, and
how much real data does it take?

For each fraction of the real training set and each repetition (``seeds``), :func:`utility_curve`

1. draws a stratified, seeded subset of the training images
   (:func:`~medisynth.data.subsets.stratified_subset`; its indices and fingerprint are stored);
2. trains the run config's class-conditional GAN on that subset alone (the subset is handed to
   the engine as its dataset, with an intensity map fitted on it), for ``minutes``;
3. generates ``synthetic_ratio`` x as many labelled images in the subset's class balance;
4. runs the validation protocol's utility metric with every condition (real; real + classic;
   synthetic; real + synthetic; real + classic + synthetic), tested on the real test split,
   every condition trained on that subset only;

and writes one report (:mod:`medisynth.validate.curve_report`): AUC against fraction per
condition with intervals over the repetitions, the paired comparison of real + classic +
synthetic with real + classic at each fraction (all repetitions' and classifier seeds' test
predictions pooled, paired by test image) and one verdict line per fraction.

Repetition ``r`` uses seed ``config.seed + r`` for its subset, its GAN and its synthetic set,
so the spread over repetitions holds the choice of subset as well as GAN training. The same
seed gives nested subsets across fractions. Classifier seeds ``0 .. classifier_seeds - 1`` are the
same in every cell.

Every finished cell is written at once (``cells/fraction-F/seed-R/cell.json`` last); a run that
was stopped resumes where it stopped when started again with the same settings (a cell whose
GAN had finished reuses it). ``curve_settings.json`` records what the cells depend on; another
run into the same folder with other settings is refused. The run config's own ``seed`` is not
one of those settings, so repetitions can be shared out between processes (one with ``seed: 0``
and ``seeds: 2``, one with ``seed: 2`` and ``seeds: 1``, at the same time) and a last run with
``seed: 0`` and ``seeds: 3`` finds every cell done and writes the pooled report.

Layout of ``OUT``::

    curve.json  curve.csv  curve.html           the report
    curve_settings.json                         what every cell depends on
    cells/fraction-0.1/seed-0/subset.json       the subset's indices and fingerprint
                              run/              the GAN's run folder (model/ = its package)
                              validation/       the cell's report.json + report.html
                              predictions.npz   test labels and each condition's probabilities
                              cell.json         the cell's results (written last)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medisynth import __version__
from medisynth.data.formats import LabelledImages, read_labelled_images, subset
from medisynth.data.sets import ImageSet, load_image_set
from medisynth.data.subsets import stratified_subset, subset_fingerprint
from medisynth.errors import ConfigError, MedisynthError
from medisynth.files import atomic_path, atomic_write_text
from medisynth.validate import keys as K
from medisynth.validate.curve_report import PREDICTIONS_FILE, summarise, write_report
from medisynth.validate.protocol import ValidateOptions, run_validation
from medisynth.validate.report import write_html

if TYPE_CHECKING:
    from medisynth.config import RunConfig
    from medisynth.package import ModelPackage

log = logging.getLogger(__name__)

SETTINGS_FILE = "curve_settings.json"
CELL_FILE = "cell.json"


class CurveInterrupted(MedisynthError):
    """Training of a cell was interrupted (SIGINT/SIGTERM); running again resumes the curve."""


@dataclass
class CurveOptions:
    """Settings of a utility curve (all have defaults).

    Attributes:
        fractions: fractions of the real training set, each in (0, 1].
        minutes: training time of each GAN (``train.max_minutes``; ``train.steps`` still caps).
        seeds: repetitions per fraction (subset, GAN and synthetic set: seed ``config.seed + r``).
        classifier_seeds: utility classifiers per condition and cell (seeds 0, 1, ...).
        epochs: epochs of each utility classifier.
        synthetic_ratio: synthetic images per real training image of the subset.
        bootstrap: resamples of each condition's AUC interval (0: none).
        paired_bootstrap: resamples of the paired comparison (GAN over classic).
        classic_synthetic: also run ``synthetic+classic``.
        progress: progress bars.
    """

    fractions: tuple[float, ...] = (0.1, 0.25, 1.0)
    minutes: float = 5.0
    seeds: int = 1
    classifier_seeds: int = 3
    epochs: int = 20
    synthetic_ratio: float = 1.0
    bootstrap: int = 200
    paired_bootstrap: int = 2000
    classic_synthetic: bool = False
    progress: bool = True

    def check(self) -> None:
        """ConfigError for out-of-range settings."""
        if not self.fractions:
            raise ConfigError("give at least one data fraction, e.g. --fractions 0.1,0.25,1.0")
        bad = [f for f in self.fractions if not 0 < f <= 1]
        if bad:
            raise ConfigError(f"data fractions must be in (0, 1], got {bad}")
        if not self.minutes > 0:
            raise ConfigError(f"--minutes must be above 0, got {self.minutes}")
        if min(self.seeds, self.classifier_seeds, self.epochs) < 1:
            raise ConfigError("seeds, classifier seeds and epochs must be at least 1")
        if not self.synthetic_ratio > 0:
            raise ConfigError(f"the synthetic ratio must be above 0, got {self.synthetic_ratio}")
        if self.paired_bootstrap < 1 or self.bootstrap < 0:
            raise ConfigError("need paired bootstrap resamples >= 1 and bootstrap >= 0")

    def cell_settings(self) -> dict[str, Any]:
        """The settings a cell's result depends on (not the fractions and seeds run)."""
        out = asdict(self)
        for name in ("fractions", "seeds", "progress"):
            out.pop(name)
        return out


@dataclass
class CurveData:
    """The real data of a curve: training images as stored, the test split, the val split."""

    train: LabelledImages
    test: ImageSet
    val: ImageSet | None

    def describe(self) -> dict[str, Any]:
        """Sizes, class counts and fingerprints (no paths)."""
        out: dict[str, Any] = {
            "train": {
                "n": len(self.train.labels),
                "class_names": self.train.class_names,
                "class_counts": _counts(self.train.labels, len(self.train.class_names)),
                "fingerprint": self.train.fingerprint,
                "source": self.train.source,
            }
        }
        for role, found in (("test", self.test), ("val", self.val)):
            out[role] = None if found is None else {
                "n": len(found.images),
                "class_counts": _counts(found.labels, len(self.train.class_names)),
                "fingerprint": found.fingerprint,
            }  # fmt: skip
        return out


def _counts(labels: np.ndarray | None, k: int) -> list[int]:
    return [] if labels is None else np.bincount(np.asarray(labels, np.int64), minlength=k).tolist()


def load_curve_data(config: RunConfig, test: str | None, val: str | None) -> CurveData:
    """The training images of ``config`` and the real test (and val) sets, checked to fit.

    ``test`` / ``val``: set specs (as ``medisynth validate`` reads them); by default the
    ``test`` and ``val`` splits of a MedMNIST file; ``val="none"`` trains every classifier to
    its last epoch.
    """
    train = read_labelled_images(config.data)
    medmnist = config.data.format == "medmnist"
    if test is None:
        if not medmnist:
            raise ConfigError(
                f"data.format {config.data.format!r} has no test split; give --test SET, a "
                "labelled real set that the GAN never sees (FILE.npz:test, a class folder)"
            )
        test = f"{config.data.resolved_path()}:test"
    if val is None and medmnist:
        from medisynth.data.io import read_medmnist

        if "val" in read_medmnist(config.data.resolved_path()).splits:
            val = f"{config.data.resolved_path()}:val"
    sets = {"test": load_image_set(test), "val": None}
    if val is not None and val.lower() != "none":
        sets["val"] = load_image_set(val)
    for role, found in sets.items():
        if found is not None:
            sets[role] = _fit(found, train, config, role)
    test_set = sets["test"]
    assert test_set is not None
    return CurveData(train, test_set, sets["val"])


def _fit(found: ImageSet, train: LabelledImages, config: RunConfig, role: str) -> ImageSet:
    """A labelled real set of the training images' classes and size (resized when
    ``data.image_size`` resized the training images), not the training split itself."""
    from medisynth.data.resize import resize_images

    if found.labels is None:
        raise ConfigError(f"the {role} set has no class labels; the utility curve needs them")
    k = len(train.class_names)
    if int(np.max(found.labels)) >= k:
        raise ConfigError(
            f"the {role} set has labels up to {int(np.max(found.labels))} but the training "
            f"data has {k} classes"
        )
    if config.data.format == "medmnist" and found.fingerprint == (
        f"{train.fingerprint}:{config.data.split}"
    ):
        raise ConfigError(f"the {role} set is the training split itself; give a held-out split")
    if found.images.shape[1] != train.images.shape[1]:
        raise ConfigError(
            f"the {role} images have {found.images.shape[1]} channel(s), the training images "
            f"{train.images.shape[1]}"
        )
    size = train.images.shape[2:]
    if found.images.shape[2:] != size:
        if config.data.image_size is None or len(set(size)) != 1:
            raise ConfigError(
                f"the {role} images are {found.images.shape[2:]}, the training images {size}"
            )
        found.images = resize_images(found.images, int(size[0]))
    found.spec = f"real {role} set"  # no path in the reports
    return found


# --------------------------------------------------------------------------- the workflow
def utility_curve(
    config: RunConfig,
    out: str | Path,
    options: CurveOptions | None = None,
    test: str | None = None,
    val: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the utility curve of ``config`` into ``out`` and write its report.

    Args:
        config: a training config of a class-conditional family on labelled images.
        out: the curve's folder (created; a folder holding anything else is refused).
        options: fractions, minutes, seeds and the utility settings.
        test, val: the real test and val sets (see :func:`load_curve_data`).

    Returns:
        The report (the content of ``curve.json``).
    """
    options = options or CurveOptions()
    options.check()
    out = Path(out)
    data = load_curve_data(config, test, val)
    _check_conditional(config, data.train)
    settings = _settings(config, options, data)
    _claim_folder(out, settings)
    started = time.perf_counter()
    cells = []
    for fraction in options.fractions:
        for repetition in range(options.seeds):
            cells.append(
                run_cell(config, data, options, out, fraction, config.seed + repetition,
                         settings["key"])
            )  # fmt: skip
    report = summarise(cells, out, options.paired_bootstrap, options.classifier_seeds)
    report.update(
        {
            "data": data.describe(),
            K.VERSION: __version__,
            K.CREATED: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "settings": settings,
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
    )
    write_report(report, out)
    return report


def _settings(config: RunConfig, options: CurveOptions, data: CurveData) -> dict[str, Any]:
    """What every cell depends on, and its digest (``key``)."""
    run = config.without_paths().to_dict()
    run.pop("seed", None)  # each cell has its own seed: processes may share the repetitions
    run["train"].pop("out_dir", None)
    run["train"].pop("progress", None)
    run["train"].pop("max_minutes", None)
    described = data.describe()
    depends = {
        "config": run,
        "options": options.cell_settings(),
        "data": {role: None if d is None else d["fingerprint"] for role, d in described.items()},
    }
    key = hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:16]
    return {**depends, "key": key}


def _claim_folder(out: Path, settings: dict[str, Any]) -> None:
    """Start or resume a curve in ``out``: refuse a file, a folder of something else, or a curve
    made with other settings; write ``curve_settings.json`` for a new one."""
    path = out / SETTINGS_FILE
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a folder for the utility curve")
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") != settings["key"]:
            changed = [k for k in ("config", "options", "data") if saved.get(k) != settings[k]]
            raise ConfigError(
                f"{out} holds a utility curve made with other settings ({', '.join(changed)} "
                "changed); choose another output folder, or run with the same settings to "
                "resume it"
            )
        return
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"{out} is not empty and holds no utility curve; choose a new or empty folder"
        )
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def _check_conditional(config: RunConfig, train: LabelledImages) -> None:
    """Refuse families that do not sample class-conditionally, before any training."""
    from medisynth.data.info import DataInfo
    from medisynth.gans import get_family

    family = get_family(config.model.family)
    info = DataInfo(
        channels=int(train.images.shape[1]),
        spatial_shape=tuple(int(s) for s in train.images.shape[2:]),
        class_names=list(train.class_names),
    )
    if family.task != "sample" or not family.build(config.model, info, training=False).conditional:
        raise ConfigError(
            f"the utility curve needs a class-conditional GAN that samples labelled images; "
            f"{config.model.family} with these settings does not (e.g. dcgan needs "
            "model.conditional: true)"
        )


def cell_name(fraction: float, seed: int) -> str:
    """The folder of a cell, relative to ``OUT/cells``.

    >>> cell_name(0.1, 3)
    'fraction-0.1/seed-3'
    """
    return f"fraction-{fraction:g}/seed-{seed}"


def run_cell(
    config: RunConfig,
    data: CurveData,
    options: CurveOptions,
    out: Path,
    fraction: float,
    seed: int,
    key: str,
) -> dict[str, Any]:
    """One cell (fraction, seed): its stored result when finished, else subset -> GAN ->
    synthetic set -> utility protocol, written as it goes."""
    folder = out / "cells" / cell_name(fraction, seed)
    done = folder / CELL_FILE
    if done.is_file():
        cell = json.loads(done.read_text())
        if cell.get("key") == key:
            log.info("utility curve: %s done, skipped", cell_name(fraction, seed))
            return dict(cell)
    log.info("utility curve: %s ...", cell_name(fraction, seed))
    timings: dict[str, float] = {}
    indices = stratified_subset(data.train.labels, fraction, seed)
    part = subset(data.train, indices, subset_fingerprint(data.train.fingerprint, indices))
    subset_entry = {
        "fraction": fraction,
        "seed": seed,
        "n": len(indices),
        "class_counts": _counts(part.labels, len(part.class_names)),
        "fingerprint": part.fingerprint,
    }
    atomic_write_text(
        folder / "subset.json", json.dumps({**subset_entry, "indices": indices.tolist()}) + "\n"
    )
    clock = time.perf_counter()
    package, training = train_gan(config, part, folder / "run", options, seed)
    timings["train"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    synthetic, made = synthetic_set(package, part, data.test, options, seed)
    timings["generate"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    train_set = ImageSet(f"real training subset ({fraction:g}, seed {seed})",
                         part.images.astype(np.float32), part.labels, part.source_dtype,
                         part.fingerprint)  # fmt: skip
    result = run_validation(data.test, synthetic, train_set, data.val, _validate_options(options))
    timings["utility"] = round(time.perf_counter() - clock, 1)
    (folder / "validation").mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "validation" / "report.json", json.dumps(result.report, indent=2))
    write_html(result, folder / "validation" / "report.html")
    arrays = result.arrays[K.UTILITY]
    with atomic_path(folder / PREDICTIONS_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, labels=arrays["labels"], **arrays["predictions"])
    cell = {
        "key": key, "name": cell_name(fraction, seed), "fraction": fraction, "seed": seed,
        "subset": subset_entry, "training": training, "synthetic": made,
        "conditions": result.report[K.METRICS][K.UTILITY],
        "warnings": result.report[K.WARNINGS], "timings_s": timings,
    }  # fmt: skip
    atomic_write_text(done, json.dumps(cell, indent=2) + "\n")
    return cell


def _validate_options(options: CurveOptions) -> ValidateOptions:
    """The protocol's options for the utility metric of a cell."""
    return ValidateOptions(
        metrics=(K.UTILITY,),
        seeds=options.classifier_seeds,
        epochs=options.epochs,
        seed=0,
        bootstrap=options.bootstrap,
        paired_bootstrap=options.paired_bootstrap,
        classic_synthetic=options.classic_synthetic,
        progress=options.progress,
    )


def train_gan(
    config: RunConfig, part: LabelledImages, run: Path, options: CurveOptions, seed: int
) -> tuple[ModelPackage, dict[str, Any]]:
    """Train the config's GAN on ``part`` alone into ``run`` (a finished run there is reused);
    the engine gets ``part`` as its dataset, so it reads nothing else."""
    from medisynth.config import RunConfig
    from medisynth.data.formats import labelled_dataset
    from medisynth.package import CARD_JSON, load_package
    from medisynth.training.engine import Trainer

    summary = run / "train_summary.json"
    batch = subset_batch_size(len(part.labels), config.train.batch_size)
    if summary.is_file() and (run / "model" / CARD_JSON).is_file():
        finished = json.loads(summary.read_text())
        if finished.get("status") in ("completed", "time_limit"):
            return load_package(run / "model"), _training_entry({**finished, "batch_size": batch})
    settings = config.to_dict()
    settings["seed"] = seed
    if batch != config.train.batch_size:
        log.warning("utility curve: %d training images, batch size %d instead of %d",
                    len(part.labels), batch, config.train.batch_size)  # fmt: skip
    settings["train"].update(out_dir=str(run), max_minutes=options.minutes,
                             progress=options.progress, batch_size=batch)  # fmt: skip
    dataset, info = labelled_dataset(part)
    result = Trainer(RunConfig.from_dict(settings), dataset, info).fit(overwrite=True)
    if result.package is None:
        raise CurveInterrupted(
            f"training in {run} was interrupted; run the same command again to resume the curve"
        )
    return load_package(result.package), _training_entry({**result.to_dict(), "batch_size": batch})


def subset_batch_size(n: int, wanted: int) -> int:
    """``train.batch_size``, or for a subset smaller than one batch the largest power of two up to
    half the subset (at least 2 images, the engine drops incomplete batches).

    >>> subset_batch_size(546, 64), subset_batch_size(55, 64), subset_batch_size(3, 64)
    (64, 16, 2)
    """
    if n >= wanted:
        return wanted
    return max(2, 2 ** int(math.floor(math.log2(max(n, 2) / 2))))


def _training_entry(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("status", "steps", "batch_size", "wall_seconds", "images_per_second", "precision",
            "device")  # fmt: skip
    return {k: result.get(k) for k in keep}


def synthetic_set(
    package: ModelPackage, part: LabelledImages, test: ImageSet, options: CurveOptions, seed: int
) -> tuple[ImageSet, dict[str, Any]]:
    """``synthetic_ratio`` x the subset's size, in its class balance, at the test images' size."""
    from medisynth.apply.generate import generate_arrays

    k = len(part.class_names)
    if not package.conditional or len(package.class_names) != k:
        raise ConfigError(
            f"the trained model samples {len(package.class_names)} classes "
            f"(conditional: {package.conditional}); the data has {k}"
        )
    counts = np.bincount(part.labels, minlength=k)
    n = max(1, int(round(options.synthetic_ratio * len(part.labels))))
    images, labels = generate_arrays(
        package, n, counts.tolist(), seed=seed, progress=options.progress,
        spatial_shape=test.images.shape[2:],
    )  # fmt: skip
    made = {"n": n, "seed": seed, "class_counts": _counts(labels, k)}
    fingerprint = f"{part.fingerprint}:gan-seed={seed}:n={n}"
    synthetic = ImageSet(f"synthetic (GAN seed {seed})", images.astype(np.float32), labels,
                         package.data.source_dtype, fingerprint)  # fmt: skip
    return synthetic, made
