"""Downstream utility: train on real / synthetic / both, with and without classic augmentation,
test on real (MedMNIST, Skandarani).

Conditions: ``real``, ``real+classic``, ``synthetic``, ``real+synthetic`` and
``real+classic+synthetic`` (:data:`CONDITIONS`), and on request ``synthetic+classic``. Every
condition flips half the training images left-right (the base augmentation); the ``+classic``
conditions replace that flip by the classic pipeline of :mod:`medisynth.metrics.augmentation`
(MONAI flips, small rotations, translation and scale, brightness and contrast jitter), applied
to every training image of the condition, synthetic ones included. Classic augmentation is off
for synthetic-only training unless ``synthetic+classic`` is asked for. The question the
conditions answer: does ``real+classic+synthetic`` beat ``real+classic``, i.e. do GAN images add
value beyond the augmentation every practitioner already uses? That pair is compared on the same
test images by a paired bootstrap (:mod:`medisynth.metrics.comparison`); the result sits in the
``real+classic+synthetic`` entry under ``paired_difference``.

Classification: a small ResNet (three residual stages, 32-64-128 channels, 2D or 3D by the input)
is trained with Adam (cosine schedule, the condition's augmentation, BatchNorm statistics
recomputed over the training set after each epoch) on each training condition for several seeds
and evaluated on the *real* test split: AUC (binary: on the positive-class probability;
multi-class: mean of one-vs-rest AUCs, as MedMNIST's ``getAUC``) and accuracy, reported as mean
and std over seeds.
With a real validation split, the epoch of best validation AUC is kept (the MedMNIST protocol).

Segmentation: MONAI's ``UNet`` (channels 16-32-64, two stride-2 levels, two residual units per
level, BatchNorm; 2D or 3D by the input; one logit channel) trained with Adam on image + binary
mask pairs with MONAI's ``DiceCELoss`` (sigmoid; soft Dice over the batch + BCE, equal weights)
and the condition's augmentation of image and mask together, BatchNorm statistics recomputed
over the training set at the end; Dice of the thresholded (0.5) prediction on the real test
split. Image sizes must be divisible by the product of the strides (4): the sets are refused
otherwise rather than padded, so Dice is always computed on the images as given. See
:class:`SegmenterSettings`.

Images are in ``[0, 1]``; labels int ``(N,)``; masks ``{0, 1}`` of the images' shape.

>>> import numpy as np
>>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
0.75
>>> dice(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]])).tolist()
[0.6666666666666666]
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medisynth.errors import ConfigError
from medisynth.metrics.augmentation import (
    BASE_AUGMENTATION,
    ClassicAugmentation,
    augment_images,
    augment_pairs,
)
from medisynth.metrics.bootstrap import bootstrap_ci, ci_key, interval
from medisynth.metrics.comparison import (
    PairedDifference,
    gain_verdict,
    paired_auc_difference,
    paired_mean_difference,
)

log = logging.getLogger(__name__)

AUC = "auc"
ACC = "acc"
DICE = "dice"
#: the training conditions run by default, in report order
CONDITIONS = ("real", "real+classic", "synthetic", "real+synthetic", "real+classic+synthetic")
#: every known condition, in report order (``synthetic+classic`` only when asked for)
KNOWN_CONDITIONS = (
    "real", "real+classic", "synthetic", "synthetic+classic", "real+synthetic",
    "real+classic+synthetic",
)  # fmt: skip
#: the key word of the conditions with classic augmentation
CLASSIC = "classic"
#: GAN augmentation on top of classic augmentation, and its baseline (the paired comparison)
GAIN, BASELINE = "real+classic+synthetic", "real+classic"
#: the paired comparison's entry inside the ``GAIN`` condition, and the key naming its baseline
PAIRED = "paired_difference"
AUGMENTATION = "augmentation"
#: the bootstrap interval of the seed-averaged AUC, inside the AUC entry
MEAN_CI = ci_key("mean")
#: the paired comparison's verdict wording
GAIN_WORDS = ("GAN augmentation", "classic augmentation")


# --------------------------------------------------------------------------- scores


def _training_sets(
    real_train: tuple[np.ndarray, np.ndarray] | None,
    synthetic_train: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The training data that the given sets allow: real, synthetic, real+synthetic."""
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if real_train is not None:
        sets["real"] = real_train
    if synthetic_train is not None:
        sets["synthetic"] = synthetic_train
    if real_train is not None and synthetic_train is not None:
        sets["real+synthetic"] = (
            np.concatenate([real_train[0], synthetic_train[0]]),
            np.concatenate([real_train[1], synthetic_train[1]]),
        )
    return sets


def condition_parts(condition: str) -> tuple[str, bool]:
    """The training data of a condition and whether it has classic augmentation.

    >>> condition_parts("real+classic+synthetic"), condition_parts("synthetic")
    (('real+synthetic', True), ('synthetic', False))
    """
    parts = condition.split("+")
    return "+".join(p for p in parts if p != CLASSIC), CLASSIC in parts


def check_conditions(conditions: tuple[str, ...]) -> None:
    """ConfigError for an unknown condition name."""
    unknown = set(conditions) - set(KNOWN_CONDITIONS)
    if unknown:
        raise ConfigError(
            f"unknown condition(s) {sorted(unknown)}; known: {', '.join(KNOWN_CONDITIONS)}"
        )


def _runnable(conditions: tuple[str, ...], sets: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(condition, data, classic) for the conditions whose data is present, in report order."""
    check_conditions(conditions)
    chosen = list(dict.fromkeys(conditions))
    return [(c, *condition_parts(c)) for c in chosen if condition_parts(c)[0] in sets]


def augmentation_names(classic: bool, augmentation: ClassicAugmentation, dims: int) -> list[str]:
    """The transforms a condition's training images go through (for reports)."""
    return augmentation.describe(dims) if classic else list(BASE_AUGMENTATION)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC from ranks (ties count 1/2); ``nan`` when one class is absent."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def multiclass_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Binary AUC on class 1, or the mean one-vs-rest AUC over classes (MedMNIST ``getAUC``)."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 2:
        return roc_auc(labels == 1, probabilities[:, 1])
    return float(
        np.nanmean(
            [roc_auc(labels == c, probabilities[:, c]) for c in range(probabilities.shape[1])]
        )
    )


def dice(pred: np.ndarray, target: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Dice per sample of binary masks ``(N, ...)``; 1.0 when both are empty."""
    p = np.asarray(pred).astype(bool).reshape(len(pred), -1)
    t = np.asarray(target).astype(bool).reshape(len(target), -1)
    inter = (p & t).sum(axis=1)
    total = p.sum(axis=1) + t.sum(axis=1)
    return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, eps))


# --------------------------------------------------------------------------- networks
def _layers(spatial_dims: int) -> tuple[Any, Any, Any]:
    if spatial_dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d
    if spatial_dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.AdaptiveAvgPool3d
    raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, spatial_dims: int) -> None:
        super().__init__()
        conv, norm, _ = _layers(spatial_dims)
        self.body = nn.Sequential(
            conv(cin, cout, 3, stride, 1, bias=False),
            norm(cout),
            nn.ReLU(inplace=True),
            conv(cout, cout, 3, 1, 1, bias=False),
            norm(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(conv(cin, cout, 1, stride, bias=False), norm(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class SmallResNet(nn.Module):
    """A small ResNet classifier (stem + 3 residual blocks + global pooling), 2D or 3D.

    >>> SmallResNet(1, 2)(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 2])
    """

    def __init__(
        self, in_channels: int, n_classes: int, spatial_dims: int = 2, width: int = 32
    ) -> None:
        super().__init__()
        conv, norm, pool = _layers(spatial_dims)
        self.features = nn.Sequential(
            conv(in_channels, width, 3, 1, 1, bias=False),
            norm(width),
            nn.ReLU(inplace=True),
            _Block(width, width, 1, spatial_dims),
            _Block(width, 2 * width, 2, spatial_dims),
            _Block(2 * width, 4 * width, 2, spatial_dims),
            pool(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class SegmenterSettings:
    """The U-Net and training settings of the segmentation utility (MONAI ``UNet``).

    >>> settings = SegmenterSettings()
    >>> settings.size_multiple, settings.build(1, spatial_dims=2)(torch.zeros(2, 1, 32, 32)).shape
    (4, torch.Size([2, 1, 32, 32]))
    """

    channels: tuple[int, ...] = (16, 32, 64)
    strides: tuple[int, ...] = (2, 2)
    num_res_units: int = 2
    norm: str = "batch"
    batch_size: int = 8
    lr: float = 3e-3  # DRIVE: Dice 0.809 vs 0.804 at 1e-3; toy discs converge ~2x faster
    flip: bool = True
    threshold: float = 0.5

    @property
    def size_multiple(self) -> int:
        """Image sizes must be multiples of this (the product of the strides)."""
        return int(np.prod(self.strides))

    def build(self, in_channels: int, spatial_dims: int) -> nn.Module:
        """A ``monai.networks.nets.UNet`` giving one logit channel."""
        from monai.networks.nets import UNet

        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(self.strides) != len(self.channels) - 1:
            raise ConfigError(
                f"a U-Net needs one stride per level: {len(self.channels)} channels, "
                f"{len(self.strides)} strides"
            )
        return UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=1,
            channels=self.channels,
            strides=self.strides,
            num_res_units=self.num_res_units,
            norm=self.norm,
        )

    def describe(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (for reports), with the network and loss named."""
        return {
            "network": "monai.networks.nets.UNet",
            **asdict(self),
            "loss": "monai DiceCELoss(sigmoid=True, batch=True): soft Dice + BCE, equal weights",
            "optimizer": "Adam",
            "augmentation": (
                "conditions without +classic: horizontal flip of image and mask"
                if self.flip
                else "conditions without +classic: none"
            ),
        }


# --------------------------------------------------------------------------- training
def _tensor(images: np.ndarray) -> torch.Tensor:
    images = np.asarray(images, np.float32)
    if images.ndim not in (4, 5):
        raise ConfigError(f"images must be (N, C, H, W) or (N, C, D, H, W), got {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)) * 2.0 - 1.0


def _flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x


def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(N, K)`` of a classifier on images in ``[0, 1]``."""
    model.eval()
    x = _tensor(images)
    with torch.inference_mode():
        out = [torch.softmax(model(x[i : i + batch_size]), 1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy()


def evaluate_classifier(
    model: nn.Module, images: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """AUC and accuracy on a labelled set."""
    probabilities = predict_proba(model, images)
    labels = np.asarray(labels).ravel()
    return {
        AUC: multiclass_auc(labels, probabilities),
        ACC: float((probabilities.argmax(1) == labels).mean()),
    }


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    flip: bool = True,
    augmentation: ClassicAugmentation | None = None,
) -> nn.Module:
    """Train a :class:`SmallResNet`; with ``val``, return the weights of the best val-AUC epoch.

    Each batch is augmented by ``augmentation`` (a seeded MONAI pipeline, see
    :mod:`medisynth.metrics.augmentation`) when given, else left-right flipped (``flip``)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"labels must be one class per image (N,), got shape {labels.shape}")
    if len(labels) != len(images):
        raise ConfigError(f"{len(images)} images but {len(labels)} labels")
    n_classes = n_classes or int(labels.max()) + 1
    if n_classes < 2:
        raise ConfigError("classification utility needs at least two classes")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = _tensor(images), torch.from_numpy(labels.astype(np.int64))
    model = SmallResNet(x.shape[1], n_classes, spatial_dims=x.ndim - 2)
    pipeline = None if augmentation is None else augmentation.pipeline(x.shape[2:], seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, epochs))
    best: tuple[float, dict[str, Any]] | None = None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:
                continue
            batch = x[index]
            if pipeline is not None:
                batch = augment_images((batch + 1.0) / 2.0, pipeline) * 2.0 - 1.0
            elif flip:
                batch = _flip(batch, generator)
            loss = nn.functional.cross_entropy(model(batch), y[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        schedule.step()
        recalibrate_batchnorm(model, x)
        if val is not None:
            score = evaluate_classifier(model, *val)[AUC]
            if best is None or score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()))
    if best is not None:
        model.load_state_dict(best[1])
    model.eval()
    return model


def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> None:
    """Set BatchNorm running statistics to exact averages over ``images`` ("precise BN").

    Short trainings on small sets leave the exponential running averages far from the data's
    statistics, which makes eval-mode predictions poor; one pass without gradients fixes it.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def _summary(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}


def classification_utility(
    real_train: tuple[np.ndarray, np.ndarray] | None,
    synthetic_train: tuple[np.ndarray, np.ndarray] | None,
    test: tuple[np.ndarray, np.ndarray],
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    epochs: int = 20,
    conditions: tuple[str, ...] = CONDITIONS,
    progress: bool = False,
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    augmentation: ClassicAugmentation | None = None,
    paired_resamples: int = 2000,
    predictions: dict[str, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """AUC and ACC (mean, std, per seed) on the real ``test`` set for each training condition.

    Conditions (see the module doc): ``real`` (train on ``real_train``), ``synthetic`` (train
    on synthetic only: TSTR), ``real+synthetic`` (both), each with ``+classic`` augmentation
    (``augmentation``, default :class:`ClassicAugmentation`) where named so. Conditions whose
    data is missing are skipped. Each entry names its ``augmentation`` (the transforms).

    With ``bootstrap`` resamples, the AUC entry also holds ``mean_ci``: a 95% percentile-bootstrap
    interval of the seed-averaged AUC over the test samples (resampled within each class, so both
    classes stay present; every seed's model is scored on the same resample). The std over
    seeds is the training variability, the interval the test set's sampling uncertainty.

    With ``paired_resamples`` (> 0) and both ``real+classic+synthetic`` and ``real+classic``
    run, the former's entry holds ``paired_difference``: the mean over seeds of the paired AUC
    difference on the same test images, its interval and p-value
    (:func:`~medisynth.metrics.comparison.paired_auc_difference`) and a verdict line.
    ``predictions``, when given, receives each condition's test probabilities
    ``(seeds, N, K)``.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((40, 1, 8, 8)).astype(np.float32); y = (x.mean((1, 2, 3)) > 0.5).astype(int)
    >>> out = classification_utility((x, y), None, (x, y), seeds=(0,), epochs=1)
    >>> sorted(out), sorted(out["real"])
    (['real', 'real+classic'], ['acc', 'auc', 'augmentation', 'n_train'])
    """
    from tqdm.auto import tqdm

    augmentation = augmentation or ClassicAugmentation()
    sets = _training_sets(real_train, synthetic_train)
    todo = _runnable(conditions, sets)
    n_classes = 1 + int(
        max(np.max(test[1]), *(np.max(d[1]) for d in (real_train, synthetic_train) if d))
    )
    results: dict[str, dict[str, Any]] = {}
    kept = {} if predictions is None else predictions
    test_labels = np.asarray(test[1]).ravel()
    dims = np.asarray(test[0]).ndim - 2
    with tqdm(total=len(todo) * len(seeds), desc="utility", disable=not progress) as bar:
        for condition, data, classic in todo:
            probabilities = []
            for seed in seeds:
                model = train_classifier(
                    *sets[data], n_classes=n_classes, epochs=epochs, seed=seed, val=val,
                    augmentation=augmentation if classic else None,
                )  # fmt: skip
                probabilities.append(predict_proba(model, test[0]))
                bar.update(1)
            kept[condition] = np.stack(probabilities)
            results[condition] = _classification_entry(test_labels, probabilities)
            results[condition]["n_train"] = len(sets[data][0])
            results[condition][AUGMENTATION] = augmentation_names(classic, augmentation, dims)
            ci = seed_averaged_auc_ci(
                test_labels, probabilities, n_resamples=bootstrap, seed=bootstrap_seed
            )
            if ci is not None:
                results[condition][AUC][MEAN_CI] = interval(ci)
    if paired_resamples and GAIN in kept and BASELINE in kept:
        difference = paired_auc_difference(
            test_labels, kept[GAIN], kept[BASELINE], n_resamples=paired_resamples,
            seed=bootstrap_seed,
        )  # fmt: skip
        results[GAIN][PAIRED] = paired_entry(difference, "AUC")
    return results


def _classification_entry(labels: np.ndarray, probabilities: list[np.ndarray]) -> dict[str, Any]:
    """AUC and accuracy (mean, std, per seed) of one condition's test probabilities."""
    aucs = [multiclass_auc(labels, p) for p in probabilities]
    accs = [float((p.argmax(1) == labels).mean()) for p in probabilities]
    return {AUC: _summary(aucs), ACC: _summary(accs)}


def paired_entry(difference: PairedDifference, metric: str) -> dict[str, Any]:
    """The report entry of the GAN-over-classic comparison: baseline, numbers, verdict line."""
    return {
        "baseline": BASELINE,
        "metric": metric,
        **difference.to_dict(),
        "verdict": gain_verdict(difference, metric, *GAIN_WORDS),
    }


def seed_averaged_auc_ci(
    labels: np.ndarray,
    probabilities: list[np.ndarray],
    *,
    n_resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Bootstrap interval of the mean over models (seeds) of their AUC on one test set.

    The test samples are resampled within each class; ``probabilities`` holds one ``(N, K)``
    array per model. ``None`` when ``n_resamples`` is 0.

    >>> y = np.r_[np.zeros(60, int), np.ones(60, int)]
    >>> p = np.random.default_rng(0).random(120) * 0.8 + 0.2 * y
    >>> ci = seed_averaged_auc_ci(y, [np.c_[1 - p, p]], n_resamples=100)
    >>> value = roc_auc(y, p)
    >>> bool(ci["ci_low"] < value < ci["ci_high"])
    True
    """
    labels = np.asarray(labels).ravel()

    def mean_auc(i: np.ndarray) -> float:
        return float(np.mean([multiclass_auc(labels[i], p[i]) for p in probabilities]))

    return bootstrap_ci(
        mean_auc, len(labels), n_resamples=n_resamples, level=level, seed=seed, strata=[labels]
    )


def _check_size(shape: tuple[int, ...], settings: SegmenterSettings, what: str) -> None:
    multiple = settings.size_multiple
    if any(size % multiple for size in shape):
        raise ConfigError(
            f"{what}: the U-Net needs image sizes divisible by {multiple} (the product of its "
            f"strides {settings.strides}), got {tuple(shape)}; crop or pad the images first"
        )


def _mask_tensor(masks: np.ndarray, images: torch.Tensor, what: str) -> torch.Tensor:
    """Binary float masks ``(N, 1, ...)`` (non-zero = foreground) matching ``images``."""
    masks = np.asarray(masks)
    spatial = tuple(images.shape[2:])
    if masks.shape[0] != len(images):
        raise ConfigError(f"{what}: {len(images)} images but {masks.shape[0]} masks")
    if masks.shape[1:] not in (spatial, (1, *spatial)):
        raise ConfigError(
            f"{what}: masks are {masks.shape[1:]} but images {tuple(images.shape[1:])}; "
            "need one binary mask (1, ...) of the images' size per image"
        )
    return torch.from_numpy((masks != 0).reshape(len(masks), 1, *spatial).astype(np.float32))


def _flip_pair(
    x: torch.Tensor, m: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip the same random half of images and masks left-right."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x, m = x.clone(), m.clone()
    x[flip], m[flip] = x[flip].flip(-1), m[flip].flip(-1)
    return x, m


def train_segmenter(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    epochs: int = 30,
    seed: int = 0,
    settings: SegmenterSettings | None = None,
    augmentation: ClassicAugmentation | None = None,
) -> nn.Module:
    """Train a MONAI U-Net (see :class:`SegmenterSettings`) on image + binary mask pairs.

    With ``augmentation``, each batch of pairs goes through its seeded MONAI dictionary pipeline
    (image and mask together) instead of the plain left-right flip of ``settings.flip``.

    >>> images = np.zeros((4, 1, 16, 16), np.float32); masks = np.zeros((4, 1, 16, 16))
    >>> train_segmenter(images, masks, epochs=1)(torch.zeros(1, 1, 16, 16)).shape
    torch.Size([1, 1, 16, 16])
    """
    from monai.losses import DiceCELoss

    settings = settings or SegmenterSettings()
    x = _tensor(images)
    m = _mask_tensor(masks, x, "segmentation training set")
    _check_size(tuple(x.shape[2:]), settings, "segmentation training set")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = settings.build(x.shape[1], spatial_dims=x.ndim - 2)
    pipeline = None if augmentation is None else augmentation.pair_pipeline(x.shape[2:], seed)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), settings.batch_size):
            index = order[start : start + settings.batch_size]
            batch, target = x[index], m[index]
            if pipeline is not None:
                batch, target = augment_pairs((batch + 1.0) / 2.0, target, pipeline)
                batch = batch * 2.0 - 1.0
            elif settings.flip:
                batch, target = _flip_pair(batch, target, generator)
            loss = loss_fn(model(batch), target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    recalibrate_batchnorm(model, x, 4 * settings.batch_size)
    model.eval()
    return model


def predict_masks(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int | None = None,
    threshold: float = 0.5,
) -> np.ndarray:
    """Binary masks ``(N, 1, ...)`` (sigmoid probability > ``threshold``) on images in ``[0, 1]``.

    ``batch_size`` defaults to about 4 million pixels per batch.
    """
    x = _tensor(images)
    batch_size = batch_size or max(1, min(256, 4_000_000 // max(1, x[0].numel())))
    model.eval()
    with torch.inference_mode():
        out = [
            torch.sigmoid(model(x[i : i + batch_size])) > threshold
            for i in range(0, len(x), batch_size)
        ]
    return torch.cat(out).numpy()


def segmentation_utility(
    real_train: tuple[np.ndarray, np.ndarray] | None,
    synthetic_train: tuple[np.ndarray, np.ndarray] | None,
    test: tuple[np.ndarray, np.ndarray],
    *,
    seeds: tuple[int, ...] = (0,),
    epochs: int = 30,
    conditions: tuple[str, ...] = CONDITIONS,
    settings: SegmenterSettings | None = None,
    progress: bool = False,
    augmentation: ClassicAugmentation | None = None,
    paired_resamples: int = 2000,
    paired_seed: int = 0,
    predictions: dict[str, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """Dice (mean, std, per seed) on the real ``test`` pairs for each training condition.

    Pairs are ``(images in [0, 1], masks)``, masks non-zero on the foreground. Conditions as in
    :func:`classification_utility` (``+classic``: the dictionary pipeline of ``augmentation``,
    image and mask together); those whose data is missing are skipped. Dice is per test image
    (1.0 when prediction and mask are both empty), averaged over the test set. The
    ``real+classic+synthetic`` entry gets the paired Dice difference to ``real+classic`` over
    the same test images (``paired_difference``, see
    :func:`~medisynth.metrics.comparison.paired_mean_difference`); ``predictions``, when given,
    receives each condition's per-image Dice ``(seeds, N)``.

    >>> rng = np.random.default_rng(0)
    >>> m = rng.random((8, 1, 8, 8)) > 0.5; x = (0.2 + 0.6 * m).astype(np.float32)
    >>> out = segmentation_utility((x, m), (x, m), (x, m), epochs=1, conditions=CONDITIONS[:4])
    >>> list(out), sorted(out["real"])
    (['real', 'real+classic', 'synthetic', 'real+synthetic'], ['augmentation', 'dice', 'n_train'])
    """
    from tqdm.auto import tqdm

    settings = settings or SegmenterSettings()
    augmentation = augmentation or ClassicAugmentation()
    test_x = _tensor(test[0])
    test_masks = _mask_tensor(test[1], test_x, "segmentation test set").numpy()
    _check_size(tuple(test_x.shape[2:]), settings, "segmentation test set")
    sets = _training_sets(*_segmentation_pairs(real_train, synthetic_train, test_x))
    todo = _runnable(conditions, sets)
    results: dict[str, dict[str, Any]] = {}
    kept = {} if predictions is None else predictions
    with tqdm(total=len(todo) * len(seeds), desc="segmentation", disable=not progress) as bar:
        for condition, data, classic in todo:
            images, masks = sets[data]
            per_image = []
            for seed in seeds:
                model = train_segmenter(
                    images, masks, epochs=epochs, seed=seed, settings=settings,
                    augmentation=augmentation if classic else None,
                )  # fmt: skip
                predicted = predict_masks(model, test[0], threshold=settings.threshold)
                per_image.append(dice(predicted, test_masks))
                bar.update(1)
            kept[condition] = np.stack(per_image)
            results[condition] = {
                DICE: _summary([float(d.mean()) for d in per_image]),
                "n_train": len(images),
                AUGMENTATION: augmentation_names(classic, augmentation, test_x.ndim - 2),
            }
    if paired_resamples and GAIN in kept and BASELINE in kept:
        difference = paired_mean_difference(
            kept[GAIN], kept[BASELINE], n_resamples=paired_resamples, seed=paired_seed
        )
        results[GAIN][PAIRED] = paired_entry(difference, "Dice")
    return results


def _segmentation_pairs(
    real_train: tuple[np.ndarray, np.ndarray] | None,
    synthetic_train: tuple[np.ndarray, np.ndarray] | None,
    test_x: torch.Tensor,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple[np.ndarray, np.ndarray] | None]:
    """The real and synthetic training pairs with binary masks, checked against the test
    images' channels and size."""
    pairs: list[tuple[np.ndarray, np.ndarray] | None] = []
    for name, pair in (("real", real_train), ("synthetic", synthetic_train)):
        if pair is None:
            pairs.append(None)
            continue
        x = _tensor(pair[0])
        if x.shape[1:] != test_x.shape[1:]:
            raise ConfigError(
                f"{name} training images are {tuple(x.shape[1:])} (C, ...) but test images "
                f"{tuple(test_x.shape[1:])}"
            )
        pairs.append((np.asarray(pair[0]), _mask_tensor(pair[1], x, f"{name} set").numpy()))
    return pairs[0], pairs[1]


SEGMENTATION_RULE = (
    "synthetic-only Dice / real-trained Dice >= 0.95: on par with real data; "
    "0.75-0.95: below real data; < 0.75: far below real data"
)


def segmentation_verdict(results: dict[str, dict[str, Any]]) -> str:
    """One plain-language line comparing the conditions of :func:`segmentation_utility`.

    The rule is :data:`SEGMENTATION_RULE` (ratio of mean Dice, synthetic-only over real).

    >>> def entry(mean, std=0.0): return {"dice": {"mean": mean, "std": std}}
    >>> segmentation_verdict({"real": entry(0.8, 0.01), "synthetic": entry(0.72, 0.02)})
    'synthetic-only Dice 0.720 ± 0.020 vs real 0.800 ± 0.010 (90% of real: below real data)'
    >>> segmentation_verdict({"real": entry(0.8)})
    'real-trained Dice 0.800 ± 0.000 (no synthetic masks: nothing to compare)'
    """

    def show(condition: str) -> str:
        score = results[condition][DICE]
        return f"{score['mean']:.3f} ± {score['std']:.3f}"

    if "synthetic" not in results:
        return f"real-trained Dice {show('real')} (no synthetic masks: nothing to compare)"
    if "real" not in results:
        return f"synthetic-only Dice {show('synthetic')} (no real training masks to compare with)"
    ratio = results["synthetic"][DICE]["mean"] / max(results["real"][DICE]["mean"], 1e-12)
    label = (
        "on par with real data"
        if ratio >= 0.95
        else "below real data"
        if ratio >= 0.75
        else "far below real data"
    )
    line = f"synthetic-only Dice {show('synthetic')} vs real {show('real')}"
    line += f" ({ratio:.0%} of real: {label})"
    if "real+synthetic" in results:
        line += f"; real+synthetic {show('real+synthetic')}"
    return line
