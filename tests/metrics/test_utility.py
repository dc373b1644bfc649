"""Downstream utility: AUC against sklearn, Dice against F1, tiny ResNet / U-Net training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.metrics import utility as U

RNG = np.random.default_rng(0)


def test_roc_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    labels = RNG.integers(0, 2, 200)
    scores = np.round(RNG.random(200) + 0.3 * labels, 1)  # many ties
    assert U.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(U.roc_auc(np.ones(5), RNG.random(5)))


def test_multiclass_auc_matches_sklearn_macro_ovr() -> None:
    from sklearn.metrics import roc_auc_score

    labels = RNG.integers(0, 4, 300)
    probs = RNG.random((300, 4)) + np.eye(4)[labels] * 0.4
    probs /= probs.sum(1, keepdims=True)
    expected = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert U.multiclass_auc(labels, probs) == pytest.approx(expected, abs=1e-12)
    binary = probs[:, :2] / probs[:, :2].sum(1, keepdims=True)
    assert U.multiclass_auc(labels % 2, binary) == pytest.approx(
        roc_auc_score(labels % 2, binary[:, 1])
    )


def test_dice_is_f1_of_the_binary_masks() -> None:
    from sklearn.metrics import f1_score

    pred, target = RNG.random((3, 1, 8, 8)) > 0.5, RNG.random((3, 1, 8, 8)) > 0.4
    expected = [f1_score(t.ravel(), p.ravel()) for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(U.dice(pred, target), expected)
    assert U.dice(np.zeros((1, 4)), np.zeros((1, 4))).tolist() == [1.0]


def _separable(n: int, shape: tuple[int, ...] = (1, 12, 12)) -> tuple[np.ndarray, np.ndarray]:
    labels = RNG.integers(0, 2, n)
    images = RNG.random((n, *shape)) * 0.5
    images[labels == 1, :, : shape[1] // 2] += 0.5  # class 1: bright top half
    return images.astype(np.float32), labels


def test_classifier_learns_a_separable_task_and_is_reproducible() -> None:
    train, test = _separable(120), _separable(60)
    model = U.train_classifier(*train, epochs=4, seed=1)
    scores = U.evaluate_classifier(model, *test)
    assert scores[U.AUC] > 0.95 and scores[U.ACC] > 0.85
    again = U.evaluate_classifier(U.train_classifier(*train, epochs=4, seed=1), *test)
    assert again == scores


def test_classification_utility_conditions_and_seeds() -> None:
    real, syn, test = _separable(80), _separable(80), _separable(40)
    out = U.classification_utility(real, syn, test, val=_separable(30), seeds=(0, 1), epochs=2)
    assert list(out) == ["real", "synthetic", "real+synthetic"]
    assert out["real+synthetic"]["n_train"] == 160
    assert len(out["real"][U.AUC]["per_seed"]) == 2
    assert out["real"][U.AUC]["mean"] == pytest.approx(np.mean(out["real"][U.AUC]["per_seed"]))
    with pytest.raises(ConfigError, match="condition"):
        U.classification_utility(real, syn, test, conditions=("fake",))


def test_classifier_on_volumes() -> None:
    model = U.train_classifier(*_separable(16, (1, 8, 8, 8)), epochs=1)
    assert U.predict_proba(model, np.zeros((2, 1, 8, 8, 8), np.float32)).shape == (2, 2)


def test_classifier_refuses_bad_labels() -> None:
    with pytest.raises(ConfigError):
        U.train_classifier(np.zeros((4, 1, 8, 8)), np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="two classes"):
        U.train_classifier(np.zeros((4, 1, 8, 8)), np.zeros(4, int))


def test_segmentation_utility_learns_bright_blobs() -> None:
    def pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
        masks = np.zeros((n, 1, 16, 16), np.float32)
        for i in range(n):
            r, c = RNG.integers(2, 10, 2)
            masks[i, 0, r : r + 5, c : c + 5] = 1
        return (0.2 + 0.6 * masks + RNG.normal(0, 0.05, masks.shape)).astype(np.float32), masks

    torch.manual_seed(0)
    out = U.segmentation_utility(pairs(24), None, pairs(8), epochs=15)
    assert list(out) == ["real"]
    assert out["real"][U.DICE]["mean"] > 0.8


def test_unet_3d_shape() -> None:
    assert U.SmallUNet(1, spatial_dims=3)(torch.zeros(1, 1, 8, 8, 8)).shape == (1, 1, 8, 8, 8)
