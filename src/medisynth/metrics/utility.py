"""Downstream utility: train on real / synthetic / both, test on real (MedMNIST, Skandarani).

Classification: a small ResNet (three residual stages, 32-64-128 channels, 2D or 3D by the input)
is trained with Adam (cosine schedule, horizontal flips, BatchNorm statistics recomputed over
the training set after each epoch) on each training condition for several seeds and evaluated on
the *real* test split: AUC (binary: on the positive-class probability; multi-class: mean of
one-vs-rest AUCs, as MedMNIST's ``getAUC``) and accuracy, reported as mean and std over seeds.
With a real validation split, the epoch of best validation AUC is kept (the MedMNIST protocol).

Segmentation: a small U-Net (two down-sampling levels) trained on image + binary mask pairs with
BCE + soft-Dice loss; Dice of the thresholded (0.5) prediction on the real test split.

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
from typing import Any

import numpy as np
import torch
from torch import nn

from medisynth.errors import ConfigError

log = logging.getLogger(__name__)

AUC = "auc"
ACC = "acc"
DICE = "dice"
CONDITIONS = ("real", "synthetic", "real+synthetic")


# --------------------------------------------------------------------------- scores


def _training_sets(
    real_train: tuple[np.ndarray, np.ndarray] | None,
    synthetic_train: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The training conditions that the given sets allow: real, synthetic, real+synthetic."""
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


class SmallUNet(nn.Module):
    """A two-level U-Net giving one logit channel, 2D or 3D (sizes divisible by 4).

    >>> SmallUNet(1)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 1, 32, 32])
    """

    def __init__(self, in_channels: int, spatial_dims: int = 2, width: int = 16) -> None:
        super().__init__()
        conv, norm, _ = _layers(spatial_dims)
        up = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        self.pool = nn.MaxPool2d(2) if spatial_dims == 2 else nn.MaxPool3d(2)

        def double(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                conv(cin, cout, 3, 1, 1), norm(cout), nn.ReLU(inplace=True),
                conv(cout, cout, 3, 1, 1), norm(cout), nn.ReLU(inplace=True),
            )  # fmt: skip

        w = width
        self.enc1, self.enc2, self.mid = (
            double(in_channels, w),
            double(w, 2 * w),
            double(2 * w, 4 * w),
        )
        self.up2, self.dec2 = up(4 * w, 2 * w, 2, 2), double(4 * w, 2 * w)
        self.up1, self.dec1 = up(2 * w, w, 2, 2), double(2 * w, w)
        self.out = conv(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.out(d1)


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
) -> nn.Module:
    """Train a :class:`SmallResNet`; with ``val``, return the weights of the best val-AUC epoch."""
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
            batch = _flip(x[index], generator) if flip else x[index]
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
) -> dict[str, dict[str, Any]]:
    """AUC and ACC (mean, std, per seed) on the real ``test`` set for each training condition.

    Conditions: ``real`` (train on ``real_train``), ``synthetic`` (train on synthetic only:
    TSTR), ``real+synthetic`` (both). Conditions whose data is missing are skipped.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((40, 1, 8, 8)).astype(np.float32); y = (x.mean((1, 2, 3)) > 0.5).astype(int)
    >>> out = classification_utility((x, y), None, (x, y), seeds=(0,), epochs=1)
    >>> sorted(out), sorted(out["real"])
    (['real'], ['acc', 'auc', 'n_train'])
    """
    from tqdm.auto import tqdm

    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ConfigError(f"unknown condition(s) {sorted(unknown)}; known: {', '.join(CONDITIONS)}")
    n_classes = int(
        max(np.max(test[1]), *(np.max(d[1]) for d in (real_train, synthetic_train) if d))
    )
    n_classes += 1
    sets = _training_sets(real_train, synthetic_train)
    todo = [c for c in conditions if c in sets]
    results: dict[str, dict[str, Any]] = {}
    with tqdm(total=len(todo) * len(seeds), desc="utility", disable=not progress) as bar:
        for condition in todo:
            aucs, accs = [], []
            for seed in seeds:
                model = train_classifier(
                    *sets[condition], n_classes=n_classes, epochs=epochs, seed=seed, val=val
                )
                scores = evaluate_classifier(model, *test)
                aucs.append(scores[AUC])
                accs.append(scores[ACC])
                bar.update(1)
            results[condition] = {
                AUC: _summary(aucs),
                ACC: _summary(accs),
                "n_train": len(sets[condition][0]),
            }
    return results


def train_segmenter(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
) -> nn.Module:
    """Train a :class:`SmallUNet` with BCE + soft-Dice on image + binary mask pairs."""
    x = _tensor(images)
    m = torch.from_numpy(np.asarray(masks, np.float32).reshape(len(x), 1, *x.shape[2:]))
    if any(s % 4 for s in x.shape[2:]):
        raise ConfigError(
            f"segmentation images need sizes divisible by 4, got {tuple(x.shape[2:])}"
        )
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SmallUNet(x.shape[1], spatial_dims=x.ndim - 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            logits = model(x[index])
            prob = torch.sigmoid(logits)
            target = m[index]
            inter = (prob * target).flatten(1).sum(1)
            soft_dice = (2 * inter + 1) / (prob.flatten(1).sum(1) + target.flatten(1).sum(1) + 1)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
            loss = loss + (1 - soft_dice).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    recalibrate_batchnorm(model, x, batch_size)
    model.eval()
    return model


def predict_masks(model: nn.Module, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Binary masks ``(N, 1, ...)`` (probability > 0.5)."""
    x = _tensor(images)
    model.eval()
    with torch.inference_mode():
        out = [model(x[i : i + batch_size]) > 0 for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def segmentation_utility(
    real_train: tuple[np.ndarray, np.ndarray] | None,
    synthetic_train: tuple[np.ndarray, np.ndarray] | None,
    test: tuple[np.ndarray, np.ndarray],
    *,
    seeds: tuple[int, ...] = (0,),
    epochs: int = 30,
) -> dict[str, dict[str, Any]]:
    """Dice (mean, std over seeds) on the real ``test`` pairs for each training condition."""
    sets = _training_sets(real_train, synthetic_train)
    results: dict[str, dict[str, Any]] = {}
    for condition, (images, masks) in sets.items():
        scores = []
        for seed in seeds:
            model = train_segmenter(images, masks, epochs=epochs, seed=seed)
            scores.append(float(dice(predict_masks(model, test[0]), test[1]).mean()))
        results[condition] = {DICE: _summary(scores), "n_train": len(images)}
    return results
