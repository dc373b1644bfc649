"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) for grey and colour images.

Every image the discriminator sees, real or generated, goes through the same random pipeline;
each transform is applied to each image with probability ``p``. Because the generator's
images are augmented too and every transform is differentiable, the generator learns the
un-augmented distribution as long as ``p`` stays below about 0.8 (the transforms do not "leak"
into the generated images). :class:`AdaptiveAugment` steers ``p`` from the overfitting
heuristic ``r_t = E[sign(D(real))]``: a discriminator that memorised a small training set is
confidently positive on every real image (``r_t -> 1``), so ``p`` rises while ``r_t`` is above
its target (0.6) and falls below it.

The pipeline is StyleGAN2-ADA's "bgc" (blit, geometric, colour) plus cutout, for any number of
channels, in plain PyTorch on ``(N, C, H, W)`` tensors in [-1, 1]:

- ``xflip`` (left-right mirror, with probability 1/2 once chosen), ``rotate90`` (0, 90, 180 or
  270 degrees), ``translate`` (whole pixels, up to ``translate_max`` of the size, mirrored
  edges): exact pixel moves, no interpolation;
- ``scale`` (isotropic, log2-normal) and ``rotate`` (any angle): one bilinear resampling with
  mirrored edges for both (StyleGAN2-ADA's anti-aliasing filters are left out);
- ``brightness`` (added, normal) and ``contrast`` (log2-normal factor around the image's
  mean, rather than StyleGAN2-ADA's around 0: the background of a scan keeps its relation to
  the anatomy); hue, saturation and luma flips are left out (grey images);
- ``cutout``: a square of half the size, at a random place, set to ``cutout_fill`` (0).

>>> import torch
>>> x = torch.rand(4, 1, 16, 16) * 2 - 1
>>> bool(torch.equal(augment(x, p=0.0), x)), augment(x, p=0.5).shape
(True, torch.Size([4, 1, 16, 16]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from medisynth.errors import ConfigError

TRANSFORMS: tuple[str, ...] = (
    "xflip",
    "rotate90",
    "translate",
    "scale",
    "rotate",
    "brightness",
    "contrast",
    "cutout",
)
STRENGTHS: tuple[str, ...] = (
    "translate_max",
    "scale_std",
    "rotate_max",
    "brightness_std",
    "contrast_std",
    "cutout_size",
    "cutout_fill",
)
AugmentMode = Literal["adaptive", "fixed", "off"]
AUGMENT_MODES: tuple[str, ...] = ("adaptive", "fixed", "off")


def _per_image(values: torch.Tensor) -> torch.Tensor:
    """``(N,)`` -> ``(N, 1, 1, 1)``, to broadcast over an image batch."""
    return values.view(-1, 1, 1, 1)


# ------------------------------------------------------------------------ deterministic cores
def xflip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror the images where ``mask`` (``(N,)`` bool) is true along their last axis (exact).

    >>> import torch
    >>> xflip(torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([True]))
    tensor([[[[2., 1.]]]])
    """
    return torch.where(_per_image(mask), x.flip(-1), x)


def rotate90(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Turn image ``n`` by ``k[n] * 90`` degrees (exact; ``torch.rot90``'s direction). On
    non-square images only half turns exist: an odd ``k`` counts as ``k - 1``.

    >>> import torch
    >>> rotate90(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([1]))
    tensor([[[[2., 4.],
              [1., 3.]]]])
    """
    k = k.remainder(4)
    square = x.shape[-1] == x.shape[-2]
    if not square:
        k = k - k.remainder(2)
    out = x
    for turns in (1, 2, 3) if square else (2,):
        out = torch.where(_per_image(k == turns), torch.rot90(x, turns, dims=(-2, -1)), out)
    return out


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside ``0..size-1`` mirrored back inside (edge pixel not repeated)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def translate_integer(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move image ``n`` by ``shift[n] = (down, right)`` whole pixels; what comes in from outside
    is the image mirrored at its edge (exact pixel copies).

    >>> import torch
    >>> translate_integer(torch.tensor([[[[1.0, 2.0, 3.0]]]]), torch.tensor([[0, 1]]))
    tensor([[[[2., 1., 2.]]]])
    """
    n, c, h, w = x.shape
    shift = shift.to(device=x.device, dtype=torch.long)
    rows = _reflect(torch.arange(h, device=x.device).unsqueeze(0) - shift[:, :1], h)
    cols = _reflect(torch.arange(w, device=x.device).unsqueeze(0) - shift[:, 1:], w)
    x = x.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w))
    return x.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def affine_matrix(
    scale: torch.Tensor, angle: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """``(N, 2, 3)`` matrices for :func:`affine_resample` that zoom image ``n`` by ``scale[n]``
    and turn it by ``angle[n]`` radians about its centre (in pixel units, so non-square images
    turn without shearing; positive angles as :func:`rotate90`'s positive turns)."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    row0 = torch.stack([cos, -sin * (height / width), torch.zeros_like(cos)], dim=1)
    row1 = torch.stack([sin * (width / height), cos, torch.zeros_like(cos)], dim=1)
    return torch.stack([row0, row1], dim=1)


def affine_resample(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample every image through its ``(2, 3)`` output-to-input matrix (``affine_grid``
    convention), bilinear, edges mirrored; computed in float32."""
    grid = F.affine_grid(matrix.float(), list(x.shape), align_corners=False)
    out = F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return out.to(x.dtype)


def adjust_brightness(x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Add ``offset[n]`` to every pixel of image ``n``."""
    return x + _per_image(offset).to(x.dtype)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale image ``n``'s deviations from its mean by ``factor[n]``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_image(factor).to(x.dtype) + mean


def cutout(x: torch.Tensor, centre: torch.Tensor, size: float, fill: float = 0.0) -> torch.Tensor:
    """Set a square of ``size`` (a fraction of the height and width) centred at ``centre[n] =
    (y, x)`` (fractions of the image, pixel centres inside it are cut) to ``fill``.

    >>> import torch
    >>> cutout(torch.ones(1, 1, 4, 4), torch.tensor([[0.5, 0.5]]), 0.5)
    tensor([[[[1., 1., 1., 1.],
              [1., 0., 0., 1.],
              [1., 0., 0., 1.],
              [1., 1., 1., 1.]]]])
    """
    _, _, h, w = x.shape
    centre = centre.to(device=x.device, dtype=torch.float32)
    ys = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) / w
    inside_y = (ys.view(1, h, 1) - centre[:, 0].view(-1, 1, 1)).abs() < size / 2
    inside_x = (xs.view(1, 1, w) - centre[:, 1].view(-1, 1, 1)).abs() < size / 2
    inside = (inside_y & inside_x).unsqueeze(1)
    return torch.where(inside, torch.full_like(x, fill), x)


# -------------------------------------------------------------------------------- the pipeline
def _on_chosen(
    x: torch.Tensor,
    on: torch.Tensor,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``x`` with ``transform(images, index)`` applied to the images where ``on`` is true, and
    computed for those images only (at a small ``p`` most transforms touch few images, or
    none); the others keep their exact values. Every transform works image by image, so this
    equals transforming the whole batch and keeping the chosen images."""
    index = on.nonzero().flatten()
    if index.numel() == 0:
        return x
    if index.numel() == len(x):
        return transform(x, index)
    return x.index_copy(0, index, transform(x.index_select(0, index), index))


def check_transforms(transforms: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for a transform name that is not in :data:`TRANSFORMS`."""
    unknown = [name for name in transforms if name not in TRANSFORMS]
    if unknown:
        raise ConfigError(f"unknown augmentation {unknown[0]!r}; known: {', '.join(TRANSFORMS)}")


def augment(
    x: torch.Tensor,
    p: float,
    transforms: Sequence[str] = TRANSFORMS,
    translate_max: float = 0.125,
    scale_std: float = 0.2,
    rotate_max: float = 1.0,
    brightness_std: float = 0.2,
    contrast_std: float = 0.5,
    cutout_size: float = 0.5,
    cutout_fill: float = 0.0,
) -> torch.Tensor:
    """Apply each of ``transforms`` to each image of ``x`` with probability ``p``.

    The transforms run in the order of :data:`TRANSFORMS`, whatever the order given; random
    numbers come from torch's global generator, and how many are drawn does not depend on
    ``p`` (so a seed gives the same draws at any ``p``). An image a transform is not applied to
    keeps its exact values: ``p = 0`` returns ``x`` unchanged. Differentiable with respect to
    ``x``.

    Args:
        x: ``(N, C, H, W)`` images in [-1, 1].
        p: probability of each transform, per image.
        transforms: names from :data:`TRANSFORMS`.
        translate_max: largest shift, as a fraction of the size.
        scale_std: standard deviation of the log2 zoom factor.
        rotate_max: largest rotation, as a fraction of a half turn (1 = any angle).
        brightness_std: standard deviation of the brightness offset.
        contrast_std: standard deviation of the log2 contrast factor.
        cutout_size: side of the cut square, as a fraction of the size.
        cutout_fill: value of the cut square (0: mid-grey in [-1, 1]).
    """
    if x.ndim != 4:
        raise ValueError(f"augment takes (N, C, H, W) images, got shape {tuple(x.shape)}")
    check_transforms(transforms)
    enabled = set(transforms)
    n, _, h, w = x.shape
    device = x.device

    def chosen() -> torch.Tensor:
        return torch.rand(n, device=device) < p

    if "xflip" in enabled:
        on = chosen() & (torch.rand(n, device=device) < 0.5)
        x = _on_chosen(x, on, lambda part, index: xflip(part, on[index]))
    if "rotate90" in enabled:
        turns = torch.randint(0, 4, (n,), device=device)
        turns = torch.where(chosen(), turns, torch.zeros_like(turns))
        x = _on_chosen(x, turns != 0, lambda part, index: rotate90(part, turns[index]))
    if "translate" in enabled:
        t = (torch.rand(n, 2, device=device) * 2 - 1) * translate_max
        t = torch.round(t * torch.tensor([h, w], device=device)).long()
        x = _on_chosen(x, chosen(), lambda part, index: translate_integer(part, t[index]))
    if "scale" in enabled or "rotate" in enabled:
        zoom = torch.exp2(torch.randn(n, device=device) * scale_std)
        zoom_on = chosen() & ("scale" in enabled)
        angle = (torch.rand(n, device=device) * 2 - 1) * math.pi * rotate_max
        angle_on = chosen() & ("rotate" in enabled)
        zoom = torch.where(zoom_on, zoom, torch.ones_like(zoom))
        angle = torch.where(angle_on, angle, torch.zeros_like(angle))
        matrix = affine_matrix(zoom, angle, h, w)
        x = _on_chosen(
            x, zoom_on | angle_on, lambda part, index: affine_resample(part, matrix[index])
        )
    if "brightness" in enabled:
        offset = torch.randn(n, device=device) * brightness_std
        x = _on_chosen(x, chosen(), lambda part, index: adjust_brightness(part, offset[index]))
    if "contrast" in enabled:
        factor = torch.exp2(torch.randn(n, device=device) * contrast_std)
        x = _on_chosen(x, chosen(), lambda part, index: adjust_contrast(part, factor[index]))
    if "cutout" in enabled:
        centre = torch.rand(n, 2, device=device)
        x = _on_chosen(
            x, chosen(), lambda part, index: cutout(part, centre[index], cutout_size, cutout_fill)
        )
    return x


class AdaptiveAugment:
    """The augmentation pipeline with its probability ``p``, steered from D's outputs on reals.

    Modes: ``"adaptive"`` (``p`` starts at ``p`` and follows ``r_t``), ``"fixed"`` (``p``
    stays as given), ``"off"`` (images pass unchanged).

    Call :meth:`update` with D's logits on the real images of every training step. Every
    ``interval`` calls (training steps, not images), ``r_t``, the mean sign of those logits
    since the last adjustment, moves ``p`` by ``sign(r_t - target) * images / (ada_kimg *
    1000)``, clamped to [0, 1], where ``images`` is the number of real images since the last
    adjustment (batch * interval): ``p`` can go from 0 to 1 in ``ada_kimg`` thousand images.
    StyleGAN2-ADA uses 500 for large data; the default 100 reacts faster, for small medical
    sets. ``r_t`` is measured in the fixed and off modes too (an overfitting monitor).

    Under data-parallel training, pass every process the logits of all processes (gathered),
    so that all keep the same ``p``.

    Args:
        mode: ``"adaptive"``, ``"fixed"`` or ``"off"``.
        p: the initial (adaptive) or constant (fixed) probability.
        target: the ``r_t`` that ``p`` is steered towards.
        interval: training steps between adjustments.
        ada_kimg: thousands of images for ``p`` to go from 0 to 1.
        transforms: names from :data:`TRANSFORMS`.
        **strengths: settings of :func:`augment` named in :data:`STRENGTHS`.

    >>> import torch
    >>> ada = AdaptiveAugment(interval=1, ada_kimg=0.1)
    >>> ada.update(torch.ones(10))  # D sure that every real image is real: overfitting
    >>> ada.p, ada.r_t
    (0.1, 1.0)
    >>> ada(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        mode: AugmentMode = "adaptive",
        p: float = 0.0,
        target: float = 0.6,
        interval: int = 4,
        ada_kimg: float = 100.0,
        transforms: Sequence[str] = TRANSFORMS,
        **strengths: float,
    ) -> None:
        if mode not in AUGMENT_MODES:
            raise ConfigError(
                f"unknown augmentation mode {mode!r}; known: {', '.join(AUGMENT_MODES)}"
            )
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"augmentation probability p must be within [0, 1], got {p}")
        if not 0.0 < target <= 1.0:
            raise ConfigError(f"augmentation target must be within (0, 1], got {target}")
        if interval < 1 or ada_kimg <= 0:
            raise ConfigError(
                f"augmentation interval ({interval}) must be >= 1 and ada_kimg ({ada_kimg}) > 0"
            )
        check_transforms(transforms)
        unknown = sorted(set(strengths) - set(STRENGTHS))
        if unknown:
            raise ConfigError(
                f"unknown augmentation setting {unknown[0]!r}; known: {', '.join(STRENGTHS)}"
            )
        self.mode = mode
        self.p = float(p) if mode != "off" else 0.0
        self.target = target
        self.interval = interval
        self.ada_kimg = ada_kimg
        self.transforms = tuple(transforms)
        self.strengths = dict(strengths)
        self.r_t = 0.0  # at the last adjustment
        self._sign_sum: torch.Tensor | None = None  # stays on D's device: no sync every step
        self._count = 0
        self._calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch (unchanged when the mode is off or ``p`` is 0)."""
        if self.mode == "off" or self.p == 0.0:
            return x
        return augment(x, self.p, self.transforms, **self.strengths)

    def update(self, real_logits: torch.Tensor) -> None:
        """Account for D's logits on a batch of real images: ``r_t`` is measured in every mode
        (an overfitting monitor for the log), ``p`` moves in the adaptive mode only."""
        signs = real_logits.detach().flatten().sign().to(torch.float64).sum()
        self._sign_sum = signs if self._sign_sum is None else self._sign_sum + signs
        self._count += real_logits.numel()
        self._calls += 1
        if self._calls >= self.interval:
            self._adjust()

    def _adjust(self) -> None:
        if self._count and self._sign_sum is not None:
            self.r_t = float(self._sign_sum) / self._count
            if self.mode == "adaptive":
                direction = (self.r_t > self.target) - (self.r_t < self.target)
                step = direction * self._count / (self.ada_kimg * 1000)
                self.p = min(max(self.p + step, 0.0), 1.0)
        self._sign_sum, self._count, self._calls = None, 0, 0

    def state_dict(self) -> dict[str, Any]:
        """``p``, ``r_t`` and the pending accumulators: a resumed run continues identically."""
        pending = 0.0 if self._sign_sum is None else float(self._sign_sum)
        return {
            "p": self.p,
            "r_t": self.r_t,
            "sign_sum": pending,
            "count": self._count,
            "calls": self._calls,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        missing = {"p", "r_t", "sign_sum", "count", "calls"} - set(state)
        if missing:
            raise ValueError(f"augmentation state lacks {', '.join(sorted(missing))}")
        self.p = float(state["p"])
        self.r_t = float(state["r_t"])
        self._count = int(state["count"])
        self._calls = int(state["calls"])
        self._sign_sum = (
            torch.tensor(float(state["sign_sum"]), dtype=torch.float64) if self._count else None
        )
