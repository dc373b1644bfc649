"""Losses and gradient penalties of the style-based GANs (StyleGAN2-ADA, R3GAN).

Logits are raw discriminator outputs of shape ``(N,)``; every loss is a mean over the batch.

- The non-saturating logistic loss (StyleGAN2): D minimises ``softplus(D(fake)) +
  softplus(-D(real))``, G minimises ``softplus(-D(fake))``.
- The relativistic pairing loss RpGAN (R3GAN, Huang et al. 2024): real and generated images
  are paired, D minimises ``softplus(-(D(real) - D(fake)))``, G the mirror ``softplus(-(D(fake)
  - D(real)))``. With R1 and R2 it trains stably without tricks.
- R1 (Mescheder et al. 2018) and R2 penalties: ``gamma / 2 * ||grad_x D(x)||^2`` on real (R1)
  or generated (R2) images. "Lazy" regularisation computes it every ``interval`` steps only,
  times ``interval``, so that its average weight stays ``gamma / 2``.

>>> import torch
>>> real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.0])
>>> round(logistic_d_loss(real, fake).item(), 4), round(rpgan_d_loss(real, fake).item(), 4)
(0.9132, 0.3709)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(softplus(-D(real))) + mean(softplus(D(fake)))``: D's logistic loss."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def logistic_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(softplus(-D(fake)))``: G's non-saturating logistic loss."""
    return F.softplus(-fake_logits.float()).mean()


def _paired(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            "the relativistic pairing loss pairs every real image with a generated one: got "
            f"{tuple(real_logits.shape)} real and {tuple(fake_logits.shape)} generated logits"
        )
    return real_logits.float() - fake_logits.float()


def rpgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(softplus(-(D(real) - D(fake))))``: D's relativistic pairing loss (R3GAN)."""
    return F.softplus(-_paired(real_logits, fake_logits)).mean()


def rpgan_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(softplus(-(D(fake) - D(real))))``: G's relativistic pairing loss (R3GAN)."""
    return F.softplus(_paired(real_logits, fake_logits)).mean()


def zero_centred_penalty(
    logits: torch.Tensor, inputs: torch.Tensor, gamma: float, interval: int = 1
) -> torch.Tensor:
    """``interval * gamma / 2 * mean_n ||grad_{x_n} D(x_n)||^2`` (differentiable, for D's
    update); ``inputs`` must have ``requires_grad=True`` and ``logits = D(inputs)``.

    >>> import torch
    >>> x = torch.ones(2, 1, 2, 2, requires_grad=True)
    >>> zero_centred_penalty((3 * x).sum(dim=(1, 2, 3)), x, gamma=1.0).item()  # 4 * 3**2 / 2
    18.0
    """
    (grad,) = torch.autograd.grad(logits.float().sum(), inputs, create_graph=True)
    return grad.float().square().flatten(1).sum(dim=1).mean() * (gamma / 2 * interval)


def r1_penalty(
    real_logits: torch.Tensor, real: torch.Tensor, gamma: float, interval: int = 1
) -> torch.Tensor:
    """R1: :func:`zero_centred_penalty` on the real images (lazy with ``interval > 1``)."""
    return zero_centred_penalty(real_logits, real, gamma, interval)


def r2_penalty(
    fake_logits: torch.Tensor, fake: torch.Tensor, gamma: float, interval: int = 1
) -> torch.Tensor:
    """R2: :func:`zero_centred_penalty` on the generated images (detached, ``requires_grad``)."""
    return zero_centred_penalty(fake_logits, fake, gamma, interval)
