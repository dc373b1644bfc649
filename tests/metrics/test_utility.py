"""Downstream utility: AUC against sklearn, Dice against F1 and MONAI, ResNet / U-Net training."""

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
    assert list(out) == [
        "real", "real+classic", "synthetic", "real+synthetic", "real+classic+synthetic"
    ]  # fmt: skip
    assert out["real+synthetic"]["n_train"] == 160
    assert out["real+classic+synthetic"]["n_train"] == 160
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


def test_dice_matches_monai_dice_metric() -> None:
    from monai.metrics import DiceMetric

    pred = RNG.random((6, 1, 9, 9)) > 0.5
    target = RNG.random((6, 1, 9, 9)) > 0.6
    pred[0], target[0] = False, False  # both empty: 1.0
    pred[1], target[1] = True, False  # empty target, full prediction: 0.0
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    expected = metric(torch.from_numpy(pred).float(), torch.from_numpy(target).float())
    np.testing.assert_allclose(U.dice(pred, target), expected[:, 0].numpy(), rtol=1e-6)
    assert U.dice(pred, target)[:2].tolist() == [1.0, 0.0]
    # a hand-built case: 3 predicted pixels, 2 true, 1 in common -> 2 * 1 / (3 + 2)
    assert U.dice(np.array([[1, 1, 1, 0]]), np.array([[1, 0, 0, 1]])).tolist() == [0.4]


def _discs(n: int, rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs of random radius and place on Gaussian noise; the masks are the discs."""
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        radius = rng.uniform(3, 7)
        cy, cx = rng.uniform(radius, size - radius, 2)
        masks[i, 0] = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    images = 0.3 + 0.35 * masks + rng.normal(0, 0.15, masks.shape)
    return np.clip(images, 0, 1).astype(np.float32), masks


def test_unet_learns_discs_and_shuffled_masks_score_lower() -> None:
    rng = np.random.default_rng(1)
    train, test = _discs(64, rng), _discs(16, rng)
    shuffled = (train[0], train[1][rng.permutation(len(train[1]))])  # masks of other images
    out = U.segmentation_utility(train, shuffled, test, epochs=10, conditions=("real", "synthetic"))
    real, wrong = out["real"][U.DICE]["mean"], out["synthetic"][U.DICE]["mean"]
    assert real > 0.8, out
    assert wrong < real - 0.3, out


def test_segmentation_utility_conditions_and_refusals() -> None:
    rng = np.random.default_rng(2)
    real, syn, test = _discs(8, rng, 16), _discs(6, rng, 16), _discs(4, rng, 16)
    squeezed = (syn[0], syn[1][:, 0] * 255)  # masks (N, H, W), 0/255: non-zero is foreground
    out = U.segmentation_utility(real, squeezed, test, seeds=(0, 1), epochs=1)
    assert list(out) == list(U.CONDITIONS)
    assert out["real+classic+synthetic"]["n_train"] == 14
    assert out["real+synthetic"]["n_train"] == 14
    dice = out["real"][U.DICE]
    assert len(dice["per_seed"]) == 2 and dice["mean"] == pytest.approx(np.mean(dice["per_seed"]))
    with pytest.raises(ConfigError, match="divisible by 4"):
        U.segmentation_utility(_discs(4, rng, 18), None, _discs(2, rng, 18), epochs=1)
    with pytest.raises(ConfigError, match="4 images but 3 masks"):
        U.train_segmenter(real[0][:4], real[1][:3], epochs=1)
    with pytest.raises(ConfigError, match="condition"):
        U.segmentation_utility(real, None, test, conditions=("fake",))


def test_segmenter_is_reproducible_and_flips_pairs_together() -> None:
    rng = np.random.default_rng(3)
    images, masks = _discs(6, rng, 16)
    one, two = (U.train_segmenter(images, masks, epochs=1, seed=5) for _ in range(2))
    for a, b in zip(one.state_dict().values(), two.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x, m = torch.from_numpy(images), torch.from_numpy(masks)
    fx, fm = U._flip_pair(x, m, torch.Generator().manual_seed(0))
    assert torch.equal((fx > 0.5) == (x > 0.5), (fx > 0.5) == (x > 0.5))
    flipped = [i for i in range(6) if not torch.equal(fm[i], m[i])]
    assert flipped and all(torch.equal(fm[i], m[i].flip(-1)) for i in flipped)
    assert all(torch.equal(fx[i], x[i].flip(-1)) for i in flipped)
    assert all(torch.equal(fx[i], x[i]) for i in range(6) if i not in flipped)


def test_unet_on_volumes() -> None:
    rng = np.random.default_rng(4)
    masks = (rng.random((4, 1, 8, 8, 8)) > 0.7).astype(np.float32)
    model = U.train_segmenter(masks * 0.5 + 0.2, masks, epochs=1)
    assert U.predict_masks(model, masks).shape == (4, 1, 8, 8, 8)
    assert U.SegmenterSettings().describe()["network"] == "monai.networks.nets.UNet"


# --------------------------------------------------------------------------- classic augmentation
def test_classic_augmentation_only_in_classic_conditions_and_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Synthetic-only training gets no classic augmentation unless synthetic+classic is asked
    for; each entry names the transforms its images went through."""
    calls: list[int] = []
    real_augment = U.augment_images

    def counting(images: torch.Tensor, pipeline: object) -> torch.Tensor:
        calls.append(len(images))
        return real_augment(images, pipeline)

    monkeypatch.setattr(U, "augment_images", counting)
    real, syn, test = _separable(24), _separable(24), _separable(12)
    out = U.classification_utility(None, syn, test, seeds=(0,), epochs=1, paired_resamples=0)
    assert list(out) == ["synthetic"] and calls == []
    assert out["synthetic"][U.AUGMENTATION] == list(U.BASE_AUGMENTATION)
    out = U.classification_utility(
        real, syn, test, seeds=(0,), epochs=1, conditions=("synthetic+classic",)
    )
    assert sum(calls) == 24  # one epoch: every synthetic image once
    names = out["synthetic+classic"][U.AUGMENTATION]
    for transform in ("RandFlip", "RandAffine", "RandAdjustContrast", "RandShiftIntensity"):
        assert any(name.startswith(transform) for name in names), names


def test_classic_training_is_reproducible_and_differs_from_the_base_flip() -> None:
    train = _separable(32)
    augment = U.ClassicAugmentation()
    one, two = (U.train_classifier(*train, epochs=1, seed=3, augmentation=augment) for _ in "ab")
    base = U.train_classifier(*train, epochs=1, seed=3)
    for a, b in zip(one.state_dict().values(), two.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, c)
        for a, c in zip(one.state_dict().values(), base.state_dict().values(), strict=True)
    )


def test_classic_pairs_move_image_and_mask_together() -> None:
    from medisynth.metrics.augmentation import augment_pairs

    rng = np.random.default_rng(5)
    _, masks = _discs(8, rng)
    x = torch.from_numpy(masks).clone()  # the image is its own mask: geometry must agree
    m = torch.from_numpy(masks).clone()
    geometry = U.ClassicAugmentation(affine_prob=1.0, intensity_prob=0.0)
    ax, am = augment_pairs(x, m, geometry.pair_pipeline((32, 32), seed=0))
    assert set(torch.unique(am).tolist()) <= {0.0, 1.0}
    assert not torch.equal(am, m)  # moved
    assert ((ax > 0.5) == (am > 0.5)).float().mean() > 0.97
    again = augment_pairs(x, m, geometry.pair_pipeline((32, 32), seed=0))
    assert torch.equal(again[0], ax) and torch.equal(again[1], am)  # seeded


def test_quarter_turns_and_flips_give_exact_orientations_of_image_and_mask() -> None:
    """Flips on both axes and quarter turns, no affine, no intensity change: every output pair
    is one of the eight orientations of its input pair (exact values, image and mask alike),
    several of them occur, and the description lists what ran."""
    from medisynth.metrics.augmentation import augment_pairs

    exact = U.ClassicAugmentation(
        flip_axes=(0, 1), rotate90_prob=0.75, affine_prob=0.0, intensity_prob=0.0
    )
    names = exact.describe(2)
    assert names[2].startswith("RandRotate90") and not any("RandAffine" in n for n in names)
    x = torch.rand(16, 1, 6, 6)
    m = (x > 0.5).float()
    ax, am = augment_pairs(x, m, exact.pair_pipeline((6, 6), seed=0))
    seen = set()
    for image, mask, out_image, out_mask in zip(x, m, ax, am, strict=True):
        matches = [
            (k, flip)
            for k in range(4)
            for flip in (False, True)
            if torch.equal(torch.rot90(image.flip(-1) if flip else image, k, (-2, -1)), out_image)
        ]
        assert matches, "not an orientation of the input"
        k, flip = matches[0]
        assert torch.equal(torch.rot90(mask.flip(-1) if flip else mask, k, (-2, -1)), out_mask)
        seen.add(matches[0])
    assert len(seen) >= 4
    with pytest.raises(ValueError, match="square"):
        exact.pipeline((6, 8), seed=0)


def test_classic_augmentation_on_volumes_rotates_about_each_axis() -> None:
    augment = U.ClassicAugmentation(flip_axes=(0, 1, 2))
    names = augment.describe(3)
    assert sum(n.startswith("RandFlip") for n in names) == 3 and "about each axis" in names[3]
    volumes = torch.rand(2, 1, 8, 8, 8)
    from medisynth.metrics.augmentation import augment_images

    out = augment_images(volumes, augment.pipeline((8, 8, 8), seed=1))
    assert out.shape == volumes.shape and not torch.equal(out, volumes)


def test_gan_over_classic_gets_a_paired_difference() -> None:
    real, syn, test = _separable(40), _separable(40), _separable(30)
    kept: dict[str, np.ndarray] = {}
    out = U.classification_utility(
        real, syn, test, seeds=(0, 1), epochs=1, paired_resamples=200, predictions=kept,
        conditions=(U.BASELINE, U.GAIN),
    )  # fmt: skip
    paired = out[U.GAIN][U.PAIRED]
    assert paired["baseline"] == "real+classic" and paired["metric"] == "AUC"
    low, high = paired["difference_ci"]
    assert low <= paired["difference"] <= high and 0 < paired["p_value"] <= 1
    assert paired["difference"] == pytest.approx(
        out[U.GAIN][U.AUC]["mean"] - out[U.BASELINE][U.AUC]["mean"]
    )
    assert kept[U.GAIN].shape == (2, 30, 2) and "classic augmentation" in paired["verdict"]


def test_segmentation_gan_over_classic_gets_a_paired_dice_difference() -> None:
    rng = np.random.default_rng(6)
    real, syn, test = _discs(8, rng, 16), _discs(8, rng, 16), _discs(6, rng, 16)
    kept: dict[str, np.ndarray] = {}
    out = U.segmentation_utility(
        real, syn, test, epochs=1, conditions=(U.BASELINE, U.GAIN), paired_resamples=100,
        predictions=kept,
    )  # fmt: skip
    paired = out[U.GAIN][U.PAIRED]
    assert paired["metric"] == "Dice" and kept[U.GAIN].shape == (1, 6)
    assert paired["difference"] == pytest.approx(
        out[U.GAIN][U.DICE]["mean"] - out[U.BASELINE][U.DICE]["mean"]
    )
