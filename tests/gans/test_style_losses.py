"""Style-GAN losses and penalties against direct reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisynth.gans.style_losses import (
    logistic_d_loss,
    logistic_g_loss,
    r1_penalty,
    r2_penalty,
    rpgan_d_loss,
    rpgan_g_loss,
)

REAL = np.array([2.5, -0.3, 0.0, 7.0, -4.0])
FAKE = np.array([-1.0, 0.4, 3.0, -6.0, 0.0])


def softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


def t(values: np.ndarray) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_logistic_losses_match_numpy() -> None:
    expected_d = np.mean(softplus(-REAL)) + np.mean(softplus(FAKE))
    assert logistic_d_loss(t(REAL), t(FAKE)).item() == pytest.approx(expected_d, rel=1e-6)
    assert logistic_g_loss(t(FAKE)).item() == pytest.approx(np.mean(softplus(-FAKE)), rel=1e-6)
    # the logistic loss is -log sigmoid: D's loss is the binary cross-entropy
    sigmoid = 1 / (1 + np.exp(-REAL))
    assert np.mean(softplus(-REAL)) == pytest.approx(-np.mean(np.log(sigmoid)))


def test_relativistic_pairing_losses_match_numpy() -> None:
    assert rpgan_d_loss(t(REAL), t(FAKE)).item() == pytest.approx(
        np.mean(softplus(-(REAL - FAKE))), rel=1e-6
    )
    assert rpgan_g_loss(t(REAL), t(FAKE)).item() == pytest.approx(
        np.mean(softplus(-(FAKE - REAL))), rel=1e-6
    )
    with pytest.raises(ValueError, match="pairs"):
        rpgan_d_loss(t(REAL), t(FAKE[:3]))


def test_r1_on_a_linear_discriminator_is_gamma_half_the_squared_weight_norm() -> None:
    torch.manual_seed(0)
    weight = torch.randn(1, 1, 3, 3, requires_grad=True)

    def d(x: torch.Tensor) -> torch.Tensor:  # D(x) = <weight, x> + 1: its gradient is weight
        return (x * weight).sum(dim=(1, 2, 3)) + 1.0

    real = torch.randn(4, 1, 3, 3, requires_grad=True)
    penalty = r1_penalty(d(real), real, gamma=0.5, interval=4)
    expected = 0.5 / 2 * weight.detach().square().sum() * 4
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(d(real).sum(), real)
    explicit = 0.5 / 2 * grad.square().sum(dim=(1, 2, 3)).mean() * 4
    assert penalty.item() == pytest.approx(explicit.item(), rel=1e-6)
    penalty.backward()  # differentiable for D's update: d/dweight = gamma * interval * weight
    assert weight.grad is not None
    assert torch.allclose(weight.grad, 0.5 * 4 * weight.detach(), atol=1e-6)


def test_penalty_is_a_batch_mean_of_per_image_squared_norms() -> None:
    x = torch.tensor([[1.0, 2.0], [0.0, 3.0]]).view(2, 1, 1, 2).requires_grad_(True)
    logits = x.square().sum(dim=(1, 2, 3))  # gradient 2x: squared norms 20 and 36
    assert r2_penalty(logits, x, gamma=2.0).item() == pytest.approx((20 + 36) / 2)
    assert r1_penalty(logits, x, gamma=2.0, interval=16).item() == pytest.approx(28 * 16)
