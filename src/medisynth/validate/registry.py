"""The validation metrics, one small object each, and their registry.

:data:`METRICS` maps a name to its metric, in the order the report lists them; ``--metrics``
accepts these names and :data:`DEFAULT_METRICS` are those run when it is not given. Adding a
metric = a :class:`~medisynth.validate.metric.Metric` subclass here and one registry line; the
registry test (``tests/validate/test_registry.py``) covers it automatically.

The metric modules of :mod:`medisynth.metrics` that pull in torch or scipy are imported where a
metric computes, so that the command line starts fast.

>>> list(METRICS)
['fid', 'kid', 'frd', 'prdc', 'diversity', 'memorization', 'paired', 'utility', 'segmentation']
>>> DEFAULT_METRICS
('fid', 'kid', 'prdc', 'diversity', 'memorization')
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from medisynth.errors import ConfigError
from medisynth.metrics import frechet
from medisynth.metrics.bootstrap import ci_key, interval
from medisynth.validate import keys as K
from medisynth.validate.context import ROLES, RunInputs
from medisynth.validate.metric import Metric, Needs, bootstrap_info
from medisynth.validate.options import MetricSettings
from medisynth.validate.render import histogram, pair_figure, table
from medisynth.validate.results import Outcome, Section

log = logging.getLogger(__name__)

_PLANES = ("axial", "coronal", "sagittal")


def _verdict_line(name: str, verdict: str, reasons: list[str]) -> str:
    return f"{name}: {verdict} ({'; '.join(reasons)})"


class Fid(Metric):
    """Fréchet distance on ``--extractor`` features (FID with Inception), per plane for volumes
    on a 2D extractor, relative FD with a training and a held-out set."""

    name = K.FID
    needs = Needs(features=ROLES)
    keys = (K.VALUE, K.EXTRACTOR, "n_real", "n_synthetic")
    default = distribution = True

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        features = {r: inputs.features(settings.extractor, r) for r in inputs.roles()}
        real, synthetic = features[K.REAL], features[K.SYNTHETIC]
        value = frechet.fid(real, synthetic)
        entry: Section = {
            K.VALUE: value,
            K.EXTRACTOR: settings.extractor,
            "n_real": len(real),
            "n_synthetic": len(synthetic),
        }
        if inputs.sets[K.REAL].is_3d and not inputs.extractor(settings.extractor).native_3d:
            blocks = [np.split(f, 3, axis=1) for f in (real, synthetic)]
            entry[K.PER_PLANE] = {
                name: frechet.fid(blocks[0][i], blocks[1][i]) for i, name in enumerate(_PLANES)
            }
        if K.TRAIN in features and K.HELDOUT in features:
            fd_syn = frechet.fid(synthetic, features[K.TRAIN])
            fd_held = frechet.fid(features[K.HELDOUT], features[K.TRAIN])
            entry[K.RELATIVE_FD] = {
                K.FD_SYNTHETIC_TRAIN: fd_syn,
                K.FD_HELDOUT_TRAIN: fd_held,
                K.VALUE: frechet.relative_fd(fd_syn, fd_held),
            }
        ci = frechet.fid_bootstrap(
            real, synthetic, n_resamples=settings.fid_bootstrap, seed=settings.seed
        )
        if ci is not None:
            entry[K.VALUE_CI] = interval(ci)
            entry[K.BOOTSTRAP] = bootstrap_info(
                ci,
                "halves of the synthetic set drawn without replacement, real statistics "
                "fixed; interval shifted to the full-set value",
            )
        label = "FID" if settings.extractor == "inception" else "FD"
        return Outcome(entry, [f"{label} ({settings.extractor}) synthetic vs real: {value:.2f}"])


class Kid(Metric):
    """Kernel inception distance (unbiased MMD^2, cubic kernel) over random subsets."""

    name = K.KID
    needs = Needs(features=(K.REAL, K.SYNTHETIC))
    keys = (K.KID_MEAN, K.KID_STD, K.EXTRACTOR, "subsets", "subset_size")
    default = distribution = True

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        real, synthetic = inputs.real_and_synthetic(settings.extractor)
        mean, std = frechet.kid(
            real,
            synthetic,
            subsets=settings.kid_subsets,
            subset_size=settings.kid_subset_size,
            seed=settings.seed,
        )
        return Outcome(
            {
                K.KID_MEAN: mean,
                K.KID_STD: std,
                K.EXTRACTOR: settings.extractor,
                "subsets": settings.kid_subsets,
                "subset_size": min(settings.kid_subset_size, len(real), len(synthetic)),
            }
        )


class Frd(Metric):
    """Fréchet radiomics distance on ``--frd-extractor`` features (radiomics-lite, with a note,
    when pyradiomics is absent)."""

    name = K.FRD
    keys = (K.VALUE, K.SQUARED_DISTANCE, K.EXTRACTOR, "n_features", "convention")
    distribution = True

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        name = settings.radiomics_extractor
        try:
            inputs.extractor(name)
        except ConfigError as err:
            if name != "radiomics":
                raise
            inputs.warnings.append(f"FRD uses radiomics-lite, not pyradiomics ({err})")
            log.warning("%s", inputs.warnings[-1])
            name = "radiomics-lite"
        real, synthetic = inputs.real_and_synthetic(name)
        squared = frechet.frd(real, synthetic)
        return Outcome(
            {
                K.VALUE: frechet.frd_log(squared),
                K.SQUARED_DISTANCE: squared,
                K.EXTRACTOR: name,
                "n_features": real.shape[1],
                "convention": (
                    "log(d_F^2) (FRDv1 / frd-score default); features z-scored with the real "
                    "set's mean and std (ddof 0), real-constant features dropped"
                ),
            }
        )


class Prdc(Metric):
    """Improved precision/recall and density/coverage on ``--extractor`` features, with
    intervals that hold fixed the set defining each score's k-NN balls."""

    name = K.PRDC
    needs = Needs(features=(K.REAL, K.SYNTHETIC))
    keys = ("precision", "recall", "density", "coverage", "k", K.EXTRACTOR)
    default = distribution = True

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        from medisynth.metrics import prdc

        real, synthetic = inputs.real_and_synthetic(settings.extractor)
        k = min(settings.k, len(real) - 1, len(synthetic) - 1)
        terms = prdc.prdc_terms(real, synthetic, k=k)
        entry: Section = {**terms.scores(), "k": k, K.EXTRACTOR: settings.extractor}
        cis = terms.intervals(settings.bootstrap, seed=settings.seed)
        if cis is not None:
            for score, ci in cis.items():
                entry[ci_key(score)] = interval(ci)
            entry[K.BOOTSTRAP] = bootstrap_info(
                cis[prdc.DENSITY], prdc.INTERVAL_TARGET,
                intervals={score: ci[prdc.METHOD] for score, ci in cis.items()},
                n_real=len(terms.recalled), n_synthetic=len(terms.in_real_ball),
            )  # fmt: skip
        return Outcome(entry)


class Diversity(Metric):
    """Median within-set nearest-neighbour distance (pixels) of equal-size subsets of the
    synthetic and the real training set, with PRDC's recall and coverage when they ran."""

    name = K.DIVERSITY
    keys = (K.SYNTHETIC_NN_MEDIAN, K.REAL_NN_MEDIAN, K.NN_RATIO, "n_per_set", "reference",
            "space", K.VERDICT, K.REASONS)  # fmt: skip
    default = True
    uses = (K.PRDC,)
    alarms = ("diversity: collapsed", "diversity: reduced")

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        from medisynth.metrics import prdc

        rng = np.random.default_rng(settings.seed)
        role = K.TRAIN if inputs.has(K.TRAIN) else K.REAL
        reference, synthetic = inputs.unit[role], inputs.unit[K.SYNTHETIC]
        n = min(len(reference), len(synthetic))
        d_real = prdc.within_set_nn_distances(_subsample(reference, n, rng))
        d_syn = prdc.within_set_nn_distances(_subsample(synthetic, n, rng))
        scores = done.get(K.PRDC, {})
        median_syn, median_real = float(np.median(d_syn)), float(np.median(d_real))
        verdict, reasons = prdc.diversity_verdict(
            median_syn, median_real, scores.get(prdc.RECALL), scores.get(prdc.COVERAGE)
        )
        entry = {
            K.SYNTHETIC_NN_MEDIAN: median_syn,
            K.REAL_NN_MEDIAN: median_real,
            K.NN_RATIO: float(np.median(d_syn) / max(np.median(d_real), 1e-12)),
            "n_per_set": n,
            "reference": role,
            "space": "pixels in [0, 1], L2",
            K.VERDICT: verdict,
            K.REASONS: reasons,
        }
        line = _verdict_line(self.name, verdict, reasons)
        return Outcome(entry, [line], arrays={self.name: (d_real, d_syn)})

    def render(self, section: Section, arrays: Mapping[str, Any]) -> str:
        out = table(section)
        if self.name in arrays:
            d_real, d_syn = arrays[self.name]
            out += histogram(
                {f"real ({section['reference']})": d_real, "synthetic": d_syn},
                "within-set nearest-neighbour distance",
                "L2 distance, pixels in [0, 1]",
            )
        return out


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(rng.choice(len(x), n, replace=False))]


class Memorization(Metric):
    """Distances of synthetic images to their nearest training images (pixels and features),
    near-copies against held-out-to-train distances, the data-copying test C_T; duplicates
    between the real sets as data findings."""

    name = K.MEMORIZATION
    needs = Needs(sets=(K.REAL, K.SYNTHETIC, K.TRAIN), features=(K.SYNTHETIC, K.TRAIN, K.HELDOUT))
    requirement = "it needs --train"
    keys = (K.PIXELS, K.FEATURES, K.EXTRACTOR, K.VERDICT, K.REASONS)
    default = True
    alarms = ("memorization: possible copying", "data finding")

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        from medisynth.metrics.memorization import memorization

        features = {r: inputs.features(settings.extractor, r) for r in self.needs.features
                    if inputs.has(r)}  # fmt: skip
        result = memorization(
            inputs.unit[K.SYNTHETIC],
            inputs.unit[K.TRAIN],
            inputs.unit.get(K.HELDOUT),
            features=(features[K.SYNTHETIC], features[K.TRAIN], features.get(K.HELDOUT)),
            percentile=settings.percentile,
            seed=settings.seed,
            progress=settings.progress,
        )
        verdict, reasons = result.verdict()
        entry: Section = {
            K.PIXELS: result.pixel.summary(settings.k_pairs),
            K.FEATURES: None if result.feature is None else result.feature.summary(0),
            K.EXTRACTOR: settings.extractor,
            K.VERDICT: verdict,
            K.REASONS: reasons,
        }
        for space_key, space in ((K.PIXELS, result.pixel), (K.FEATURES, result.feature)):
            if space is None:
                continue
            ci = space.near_copy_ci(settings.bootstrap, seed=settings.seed)
            if ci is not None:
                entry[space_key][K.NEAR_COPY_FRACTION_CI] = interval(ci)
                entry[K.BOOTSTRAP] = bootstrap_info(
                    ci, "Wilson score interval over the synthetic images against the fixed "
                    "threshold (the threshold's own uncertainty is not included)",
                )  # fmt: skip
        outcome = Outcome(entry, [_verdict_line(self.name, verdict, reasons)])
        outcome.arrays[self.name] = result
        _data_findings(result, outcome)
        return outcome

    def render(self, section: Section, arrays: Mapping[str, Any]) -> str:
        out = table(section)
        if self.name not in arrays:
            return out
        mem, unit = arrays[self.name], arrays["unit"]
        series = {"synthetic to train": mem.pixel.synthetic_to_train}
        if mem.pixel.heldout_to_train is not None:
            series["held-out to train"] = mem.pixel.heldout_to_train
        out += histogram(series, "distance to the nearest training image",
                         "L2, pixels in [0, 1]", mem.pixel.threshold)  # fmt: skip
        out += "<h4>Closest synthetic-training pairs (pixels)</h4>"
        out += pair_figure(unit[K.SYNTHETIC], unit[K.TRAIN], mem.pixel.closest_pairs(8),
                           ("synthetic", "train"))  # fmt: skip
        if mem.heldout_train_duplicates:
            out += "<h4>Data finding: held-out images identical to training images</h4>"
            out += pair_figure(unit[K.HELDOUT], unit[K.TRAIN], mem.heldout_train_duplicates[:8],
                               ("heldout", "train"))  # fmt: skip
        return out


def _data_findings(result: Any, outcome: Outcome) -> None:
    """Duplicates between held-out and training images, and within the training set."""
    pairs = [{"heldout": i, "train": j} for i, j, _ in result.heldout_train_duplicates]
    outcome.findings[K.HELDOUT_TRAIN_DUPLICATES] = pairs
    outcome.findings[K.TRAIN_DUPLICATES] = [
        {"train_a": i, "train_b": j} for i, j, _ in result.train_duplicates
    ]
    if pairs:
        names = ", ".join(f"heldout[{p['heldout']}] = train[{p['train']}]" for p in pairs[:10])
        outcome.verdicts.append(
            f"data finding: {len(pairs)} held-out image(s) duplicate training images "
            f"({names}); they leak into training and bias memorisation figures"
        )
    if result.train_duplicates:
        outcome.verdicts.append(
            f"data finding: {len(result.train_duplicates)} duplicate pair(s) within train"
        )


class Paired(Metric):
    """SSIM, MS-SSIM, PSNR, MAE, NMSE of synthetic image i against real image i (translation,
    enhancement), inside ``--mask`` when given."""

    name = K.PAIRED
    needs = Needs(pairs=True)
    keys = ("ssim", "psnr", "mae", "nmse", "data_range", "data_range_note", "masked")

    def check(self, inputs: RunInputs, settings: MetricSettings) -> None:
        super().check(inputs, settings)  # as many synthetic as real images
        n_real = len(inputs.sets[K.REAL].images)
        if inputs.mask is not None and np.shape(inputs.mask)[0] != n_real:
            raise ConfigError(
                f"{np.shape(inputs.mask)[0]} masks for {n_real} real images; "
                "give one mask per image"
            )

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        from medisynth.metrics.paired import paired_metrics

        mask = inputs.mask
        entry = paired_metrics(
            inputs.unit[K.SYNTHETIC], inputs.unit[K.REAL], data_range=1.0,
            mask=None if mask is None else np.asarray(mask) > 0,
        )  # fmt: skip
        entry["data_range_note"] = (
            f"images scaled to [0, 1] from the window {inputs.window}; data_range 1.0"
        )
        entry["masked"] = mask is not None
        return Outcome(entry)


class Utility(Metric):
    """A small classifier trained on real, synthetic, and both, with and without classic
    augmentation, tested on the real set (AUC, accuracy over seeds); the best epoch on a
    labelled held-out split when there is one; GAN over classic augmentation compared by a
    paired bootstrap on the same test images."""

    name = K.UTILITY
    needs = Needs(sets=(K.REAL, K.SYNTHETIC, K.TRAIN), labels=(K.REAL, K.TRAIN))
    requirement = "it needs a labelled --train and a labelled --real"
    keys = ("real", "real+classic")

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        from medisynth.metrics.utility import classification_utility

        real, synthetic, train = (inputs.sets[r] for r in (K.REAL, K.SYNTHETIC, K.TRAIN))
        heldout = inputs.sets.get(K.HELDOUT)
        unit = inputs.unit
        assert train.labels is not None and real.labels is not None
        val = None
        if heldout is not None and heldout is not real and heldout.labels is not None:
            val = (unit[K.HELDOUT], heldout.labels)
        predictions: dict[str, np.ndarray] = {}
        entry = classification_utility(
            (unit[K.TRAIN], train.labels),
            None if synthetic.labels is None else (unit[K.SYNTHETIC], synthetic.labels),
            (unit[K.REAL], real.labels),
            val=val,
            seeds=tuple(range(settings.seed, settings.seed + settings.seeds)),
            epochs=settings.epochs,
            conditions=settings.utility_conditions(),
            progress=settings.progress,
            bootstrap=settings.bootstrap,
            bootstrap_seed=settings.seed,
            paired_resamples=settings.paired_bootstrap,
            predictions=predictions,
        )
        arrays = {self.name: {"labels": np.asarray(real.labels), "predictions": predictions}}
        return Outcome(entry, _gain_lines(self.name, entry), arrays=arrays)


def _gain_lines(name: str, conditions: Mapping[str, Any]) -> list[str]:
    """The verdict line of the GAN-over-classic comparison, when it ran."""
    from medisynth.metrics.utility import GAIN, PAIRED

    paired = conditions.get(GAIN, {}).get(PAIRED)
    return [] if paired is None else [f"{name}: {paired['verdict']}"]


class Segmentation(Metric):
    """A U-Net trained on real, synthetic, and both (image + mask pairs), tested on the real
    set: Dice per training condition and a verdict."""

    name = K.SEGMENTATION
    needs = Needs(masks=(K.REAL,), masks_any=(K.TRAIN, K.SYNTHETIC))
    requirement = (
        "it needs masks on --real (the test set) and on --train and/or --synthetic "
        "({split}_masks in an npz, or --real-masks / --train-masks / --synthetic-masks)"
    )
    keys = (K.CONDITIONS, "n_test", "test_foreground_fraction", "seeds", "epochs", K.SETTINGS,
            "dice_definition", K.VERDICT, K.RULE)  # fmt: skip

    def check(self, inputs: RunInputs, settings: MetricSettings) -> None:
        from medisynth.metrics.utility import SegmenterSettings

        super().check(inputs, settings)
        if _masks(inputs, K.SYNTHETIC) is None:
            inputs.warnings.append(
                "segmentation: the synthetic set has no masks; only real training runs"
            )
        elif _masks(inputs, K.TRAIN) is None:
            inputs.warnings.append("segmentation: no training masks; only synthetic training runs")
        multiple = SegmenterSettings().size_multiple
        size = tuple(inputs.sets[K.REAL].images.shape[2:])
        if any(s % multiple for s in size):
            raise ConfigError(
                f"segmentation: the U-Net needs image sizes divisible by {multiple}, got "
                f"{size}; crop or pad the sets, or leave out segmentation"
            )

    def compute(
        self, inputs: RunInputs, settings: MetricSettings, done: Mapping[str, Section]
    ) -> Outcome:
        from medisynth.metrics.utility import (
            SEGMENTATION_RULE,
            SegmenterSettings,
            segmentation_utility,
            segmentation_verdict,
        )

        real_masks = _masks(inputs, K.REAL)
        assert real_masks is not None
        train, synthetic = (_masks(inputs, r) for r in (K.TRAIN, K.SYNTHETIC))
        unit = inputs.unit
        segmenter = SegmenterSettings()
        seeds = tuple(range(settings.seed, settings.seed + settings.seeds))
        predictions: dict[str, np.ndarray] = {}
        conditions = segmentation_utility(
            None if train is None else (unit[K.TRAIN], train),
            None if synthetic is None else (unit[K.SYNTHETIC], synthetic),
            (unit[K.REAL], real_masks),
            seeds=seeds,
            epochs=settings.epochs,
            conditions=settings.utility_conditions(),
            settings=segmenter,
            progress=settings.progress,
            paired_resamples=settings.paired_bootstrap,
            paired_seed=settings.seed,
            predictions=predictions,
        )
        verdict = segmentation_verdict(conditions)
        entry = {
            K.CONDITIONS: conditions,
            "n_test": len(inputs.sets[K.REAL].images),
            "test_foreground_fraction": float((real_masks != 0).mean()),
            "seeds": list(seeds),
            "epochs": settings.epochs,
            K.SETTINGS: segmenter.describe(),
            "dice_definition": "per real test image, prediction thresholded at 0.5; averaged "
            "over images, then mean and std over seeds",
            K.VERDICT: verdict,
            K.RULE: SEGMENTATION_RULE,
        }
        lines = [f"segmentation utility: {verdict}", *_gain_lines("segmentation", conditions)]
        return Outcome(entry, lines, arrays={self.name: {"predictions": predictions}})

    def render(self, section: Section, arrays: Mapping[str, Any]) -> str:
        return segmentation_table(section)


def _masks(inputs: RunInputs, role: str) -> np.ndarray | None:
    return inputs.sets[role].masks if inputs.has(role) else None


def segmentation_table(entry: Section) -> str:
    """Dice per training condition (rows), the verdict with its rule, then the settings.

    >>> entry = {K.CONDITIONS: {"real": {K.DICE: {"mean": 0.8, "std": 0.01, "per_seed": [0.8]},
    ...          "n_train": 10}}, K.VERDICT: "v", K.RULE: "r", K.SETTINGS: {}}
    >>> "<td>0.800 ± 0.010</td>" in segmentation_table(entry)
    True
    """
    rows = ["<tr><th>trained on</th><th>Dice (real test), mean ± std over seeds</th>"
            "<th>per seed</th><th>n train</th><th>augmentation</th></tr>"]  # fmt: skip
    gains = []
    for condition, scores in entry[K.CONDITIONS].items():
        dice = scores[K.DICE]
        per_seed = ", ".join(f"{v:.3f}" for v in dice["per_seed"] if v is not None)
        transforms = "; ".join(scores.get("augmentation", []))
        rows.append(
            f"<tr><th>{html.escape(condition)}</th><td>{dice['mean']:.3f} ± {dice['std']:.3f}</td>"
            f"<td>{per_seed}</td><td>{scores['n_train']}</td>"
            f"<td><small>{html.escape(transforms)}</small></td></tr>"
        )
        if "paired_difference" in scores:
            gains.append(f"<p>{html.escape(scores['paired_difference']['verdict'])}</p>")
    rest = {k: v for k, v in entry.items() if k not in (K.CONDITIONS, K.VERDICT, K.RULE)}
    return (
        "<table>"
        + "".join(rows)
        + "</table>"
        + "".join(gains)
        + f"<p>{html.escape(str(entry[K.VERDICT]))}<br><small>rule: "
        f"{html.escape(str(entry[K.RULE]))}</small></p>" + table(rest)
    )


#: every metric by name, in the order the report lists them
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Fid(), Kid(), Frd(), Prdc(), Diversity(), Memorization(), Paired(), Utility(),
        Segmentation(),
    )
}  # fmt: skip
#: the metrics run when none are chosen
DEFAULT_METRICS = tuple(name for name, metric in METRICS.items() if metric.default)
