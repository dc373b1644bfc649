"""Adaptive discriminator augmentation: exact transforms, probability, p control, resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.gans.ada import (
    TRANSFORMS,
    AdaptiveAugment,
    affine_matrix,
    affine_resample,
    augment,
    cutout,
    rotate90,
    translate_integer,
    xflip,
)


def blobs(n: int = 8, channels: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [-1, 1] with a dark background, as scans."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    centre = torch.rand(n, 2, generator=gen) * size * 0.5 + size * 0.25
    radius = torch.rand(n, generator=gen) * size * 0.2 + size * 0.15
    dist = ((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2).sqrt()
    image = torch.sigmoid(radius[:, None, None] - dist) * 1.6 - 1
    image = image + 0.1 * torch.rand(n, size, size, generator=gen)
    return image.unsqueeze(1).repeat(1, channels, 1, 1).clamp(-1, 1)


def test_probability_zero_is_the_exact_identity() -> None:
    x = blobs(16, channels=3)
    torch.manual_seed(0)
    assert torch.equal(augment(x, 0.0), x)
    assert torch.equal(AdaptiveAugment(p=0.0)(x), x)
    assert torch.equal(AdaptiveAugment(mode="fixed", p=0.0)(x), x)
    off = AdaptiveAugment(mode="off", p=0.5)
    assert off.p == 0.0 and torch.equal(off(x), x)
    assert not torch.equal(augment(x, 1.0), x)


def test_flips_and_quarter_turns_are_exact_inverses() -> None:
    x = torch.randn(6, 2, 8, 8)
    mask = torch.tensor([True, False, True, True, False, False])
    assert torch.equal(xflip(xflip(x, mask), mask), x)
    assert torch.equal(xflip(x, mask)[0], x[0].flip(-1))
    assert torch.equal(xflip(x, mask)[1], x[1])
    k = torch.tensor([0, 1, 2, 3, 1, 3])
    out = x
    for _ in range(4):
        out = rotate90(out, k)
    assert torch.equal(out, x)
    assert torch.equal(rotate90(rotate90(x, k), 4 - k), x)
    for n in range(6):
        assert torch.equal(rotate90(x, k)[n], torch.rot90(x[n], int(k[n]), dims=(-2, -1)))
    wide = torch.randn(2, 1, 4, 6)  # non-square: half turns only
    assert torch.equal(rotate90(wide, torch.tensor([1, 2]))[0], wide[0])
    assert torch.equal(rotate90(wide, torch.tensor([1, 2]))[1], wide[1].flip(-1).flip(-2))


def test_integer_translation_mirrors_the_edges_like_numpy() -> None:
    x = torch.randn(3, 2, 7, 9)
    shift = torch.tensor([[0, 0], [2, -3], [-1, 4]])
    out = translate_integer(x, shift)
    for n, (dy, dx) in enumerate(shift.tolist()):
        padded = np.pad(x[n].numpy(), ((0, 0), (7, 7), (9, 9)), mode="reflect")
        expected = padded[:, 7 - dy : 14 - dy, 9 - dx : 18 - dx]
        assert np.array_equal(out[n].numpy(), expected)


def test_resampling_turns_like_rotate90_and_zooms_about_the_centre() -> None:
    x = torch.randn(2, 1, 8, 8)
    quarter = affine_resample(x, affine_matrix(torch.ones(2), torch.full((2,), torch.pi / 2), 8, 8))
    assert torch.allclose(quarter, rotate90(x, torch.ones(2, dtype=torch.long)), atol=1e-5)
    same = affine_resample(x, affine_matrix(torch.ones(2), torch.zeros(2), 8, 8))
    assert torch.allclose(same, x, atol=1e-6)
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    zoomed = affine_resample(ramp, affine_matrix(torch.tensor([2.0]), torch.zeros(1), 8, 8))
    assert torch.allclose(
        zoomed[0, 0, 0], torch.tensor([1.75, 2.25, 2.75, 3.25, 3.75, 4.25, 4.75, 5.25])
    )


def test_cutout_box() -> None:
    out = cutout(torch.ones(2, 1, 8, 8), torch.tensor([[0.5, 0.5], [0.0, 0.0]]), 0.5, fill=-1.0)
    assert (out[0] == -1).sum() == 16 and (out[0, 0, 2:6, 2:6] == -1).all()
    assert (out[1] == -1).sum() == 4 and (out[1, 0, :2, :2] == -1).all()


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_every_transform_is_differentiable(transform: str) -> None:
    torch.manual_seed(0)
    x = blobs(8, channels=3).requires_grad_(True)
    out = augment(x, 1.0, [transform])
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("transform", "rate"),
    [("xflip", 0.5), ("rotate90", 0.75), ("scale", 1.0), ("rotate", 1.0), ("brightness", 1.0)]
    + [("contrast", 1.0), ("cutout", 1.0)],
)
def test_each_image_is_augmented_with_probability_p(transform: str, rate: float) -> None:
    torch.manual_seed(0)
    x = blobs(400, size=8)
    changed = (augment(x, 0.3, [transform]) != x).flatten(1).any(dim=1).float().mean().item()
    assert changed == pytest.approx(0.3 * rate, abs=0.07)


def test_transforming_only_the_chosen_images_equals_transforming_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pipeline computes each transform for the chosen images only; with every transform
    computed for the whole batch and the chosen images kept, the output and the gradient are
    the same (p = 0.3: some images chosen; p = 1: all)."""
    import medisynth.gans.ada as ada

    def whole_batch(x, on, transform):  # type: ignore[no-untyped-def]
        everything = transform(x, torch.arange(len(x)))
        return torch.where(on.view(-1, 1, 1, 1), everything, x)

    x = blobs(24, size=12)
    for p in (0.3, 1.0):
        outputs, grads = [], []
        for chooser in (ada._on_chosen, whole_batch):
            monkeypatch.setattr(ada, "_on_chosen", chooser)
            torch.manual_seed(4)
            leaf = x.clone().requires_grad_(True)
            out = augment(leaf, p)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            outputs.append(out.detach())
            grads.append(leaf.grad)
        torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-6)
        torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6)
        assert not torch.equal(outputs[0], x)


def test_small_p_does_not_shift_the_intensity_distribution() -> None:
    torch.manual_seed(0)
    x = blobs(512, size=16)
    out = augment(x, 0.2)
    assert abs(out.mean().item() - x.mean().item()) < 0.03
    assert out.std().item() == pytest.approx(x.std().item(), rel=0.08)
    grey = blobs(64, channels=3)
    torch.manual_seed(1)
    colour = augment(grey, 0.5)
    assert torch.allclose(colour[:, 0], colour[:, 1]) and torch.allclose(colour[:, 1], colour[:, 2])


def test_p_rises_while_d_is_sure_of_the_reals() -> None:
    torch.manual_seed(0)
    ada = AdaptiveAugment(interval=4, ada_kimg=100)
    seen = []
    for _ in range(40):  # a D that memorised 16 images: every real logit strongly positive
        ada.update(torch.randn(16) + 6)
        seen.append(ada.p)
    assert ada.r_t == 1.0
    assert seen[-1] == pytest.approx(10 * 16 * 4 / 100_000)  # 10 adjustments of batch * interval
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)) and seen[-1] > seen[0]
    fast = AdaptiveAugment(interval=1, ada_kimg=0.05)
    for _ in range(10):
        fast.update(torch.full((16,), 3.0))
    assert fast.p == 1.0  # clamped


def test_p_stays_at_zero_or_falls_when_d_is_unsure() -> None:
    torch.manual_seed(0)
    ada = AdaptiveAugment(interval=4, ada_kimg=100)
    for _ in range(40):  # a large, easy data set: D's real logits centred at 0
        ada.update(torch.randn(16))
    assert ada.p == 0.0 and abs(ada.r_t) < 0.5
    falling = AdaptiveAugment(p=0.5, interval=2, ada_kimg=1)
    for _ in range(20):
        falling.update(-torch.rand(8))
    assert falling.p == pytest.approx(0.5 - 10 * 16 / 1000) and falling.r_t == -1.0
    for mode, p in (("fixed", 0.3), ("off", 0.0)):  # r_t measured, p left alone
        steady = AdaptiveAugment(mode=mode, p=0.3, interval=1, ada_kimg=0.01)  # type: ignore[arg-type]
        steady.update(torch.ones(16))
        assert steady.p == p and steady.r_t == 1.0


def test_state_round_trip_resumes_identically() -> None:
    torch.manual_seed(0)
    logits = [torch.randn(8) + 1.0 for _ in range(30)]
    ada = AdaptiveAugment(interval=4, ada_kimg=0.5)
    for batch in logits[:11]:  # 2 adjustments, then 3 updates pending
        ada.update(batch)
    state = copy.deepcopy(ada.state_dict())
    assert state["calls"] == 3
    resumed = AdaptiveAugment(interval=4, ada_kimg=0.5)
    resumed.load_state_dict(state)
    fresh = AdaptiveAugment(interval=4, ada_kimg=0.5, p=ada.p)  # p alone: pending updates lost
    trace, resumed_trace, fresh_trace = [], [], []
    for batch in logits[11:]:
        for augmenter, record in ((ada, trace), (resumed, resumed_trace), (fresh, fresh_trace)):
            augmenter.update(batch)
            record.append(augmenter.p)
    assert trace == resumed_trace
    assert trace != fresh_trace
    assert 0 < ada.p < 1
    x = blobs(8)
    torch.manual_seed(5)
    first = ada(x)
    torch.manual_seed(5)
    assert torch.equal(resumed(x), first)
    with pytest.raises(ValueError, match="calls"):
        resumed.load_state_dict({"p": 0.1, "r_t": 0.0, "sign_sum": 0.0, "count": 0})


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown augmentation 'hue'"):
        AdaptiveAugment(transforms=["xflip", "hue"])
    with pytest.raises(ConfigError, match="mode"):
        AdaptiveAugment(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="within"):
        AdaptiveAugment(p=1.5)
    with pytest.raises(ConfigError, match="setting 'noise_std'"):
        AdaptiveAugment(noise_std=0.1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment(torch.zeros(2, 8, 8), 0.5)
