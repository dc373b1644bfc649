"""DCGAN-style generator and discriminator, optionally class-conditional, 2D or 3D.

The layout follows Radford et al. (2015): the generator maps a latent vector to a small
``base x base`` map and doubles the resolution with stride-2 transposed convolutions (BatchNorm +
ReLU, ``tanh`` output); the discriminator halves it with stride-2 convolutions (LeakyReLU 0.2).
Sizes ``s * 2**k`` with ``s <= 8`` work (28 = 7 * 4, 64 = 4 * 16, 256 = 4 * 64).

Class conditioning: conditional BatchNorm in the generator, a projection head (Miyato & Koyama
2018) in the discriminator; or :class:`PerClassNetworks`, one unconditional network per class
(Frid-Adar et al. 2018). Spectral normalisation of the discriminator is optional.

>>> import torch
>>> g = DCGANGenerator(latent_dim=16, out_channels=1, image_size=28, base_channels=8, num_classes=2)
>>> d = DCGANDiscriminator(in_channels=1, image_size=28, base_channels=8, num_classes=2)
>>> labels = torch.tensor([0, 1, 1])
>>> images = g(torch.randn(3, 16), labels)
>>> images.shape, d(images, labels).shape
(torch.Size([3, 1, 28, 28]), torch.Size([3]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import ConfigError
from medisynth.nets.layers import (
    ConditionalBatchNorm,
    batch_norm_type,
    conv_transpose_type,
    conv_type,
    dcgan_init,
    maybe_spectral_norm,
)

MAX_WIDTH_FACTOR = 8


def resolution_ladder(image_size: int) -> tuple[int, int]:
    """``(base, k)`` with ``image_size == base * 2**k`` and ``base <= 8`` as large as possible.

    >>> resolution_ladder(28), resolution_ladder(64), resolution_ladder(256)
    ((7, 2), (4, 4), (4, 6))
    """
    base, doublings = image_size, 0
    while base % 2 == 0 and base > 7:
        base //= 2
        doublings += 1
    if base > 8 or base < 3 or doublings == 0:
        raise ConfigError(
            f"image size {image_size} is not supported: use s * 2**k with 3 <= s <= 8 and k >= 1 "
            "(e.g. 28, 32, 48, 64, 96, 128, 256); set data.image_size to resize"
        )
    return base, doublings


def _upsampling(
    cin: int, cout: int, bias: bool, spatial_dims: int, mode: Literal["transposed", "resize"]
) -> nn.Module:
    """One doubling of the generator: a transposed convolution or resize + convolution."""
    if mode == "transposed":
        conv_t = conv_transpose_type(spatial_dims)
        return conv_t(cin, cout, kernel_size=4, stride=2, padding=1, bias=bias)
    conv = conv_type(spatial_dims)
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), conv(cin, cout, 3, 1, 1, bias=bias)
    )


class DCGANGenerator(nn.Module):
    """Latent vector (and class label) -> image in [-1, 1].

    Args:
        latent_dim: length of the latent vector.
        out_channels: image channels (1 grey, 3 colour).
        image_size: pixels per side (see :func:`resolution_ladder`).
        base_channels: width of the last hidden layer; earlier layers are 2x, 4x, ... (max 8x).
        num_classes: ``> 1`` for a class-conditional generator (conditional BatchNorm).
        spatial_dims: 2 (images) or 3 (volumes).
        upsample: ``"transposed"``: stride-2 transposed 4x4 convolutions (Radford et al.);
            ``"resize"``: nearest-neighbour doubling then a 3x3 convolution, which cannot make
            the checkerboard pattern of overlapping transposed kernels (Odena et al. 2016).
    """

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        image_size: int,
        base_channels: int = 64,
        num_classes: int = 0,
        spatial_dims: int = 2,
        upsample: Literal["transposed", "resize"] = "transposed",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.spatial_dims = spatial_dims
        self.start, doublings = resolution_ladder(image_size)
        widths = [base_channels * min(2**i, MAX_WIDTH_FACTOR) for i in range(doublings)][::-1]
        self.start_channels = widths[0]
        self.project = nn.Linear(latent_dim, widths[0] * self.start**spatial_dims, bias=False)
        self.norms = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, width in enumerate(widths):
            self.norms.append(ConditionalBatchNorm(width, num_classes, spatial_dims))
            last = i == len(widths) - 1
            out = out_channels if last else widths[i + 1]
            self.ups.append(_upsampling(width, out, last, spatial_dims, upsample))
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.project(z).view(
            z.shape[0], self.start_channels, *([self.start] * self.spatial_dims)
        )
        for norm, up in zip(self.norms, self.ups, strict=True):
            x = up(F.relu(norm(x, labels)))
        return torch.tanh(x)


class DCGANDiscriminator(nn.Module):
    """Image (and class label) -> one realness score per image.

    Stride-2 convolutions halve the size down to at most 4 pixels per side; the features are
    summed over space, then ``linear(h) + <embed(label), h>`` (the projection discriminator) gives
    the score.

    Args:
        in_channels: image channels.
        image_size: pixels per side.
        base_channels: width of the first layer; later layers are 2x, 4x, ... (max 8x).
        num_classes: ``> 1`` for a projection discriminator.
        spectral_norm: spectral-normalise every weight (then no BatchNorm is used).
        batch_norm: BatchNorm after every convolution but the first (DCGAN); ignored with
            spectral norm.
        spatial_dims: 2 or 3.
        class_head: also a linear classifier on the pooled features (AC-GAN); its logits come
            back with ``forward(..., with_logits=True)``.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        base_channels: int = 64,
        num_classes: int = 0,
        spectral_norm: bool = True,
        batch_norm: bool = False,
        spatial_dims: int = 2,
        class_head: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        conv = conv_type(spatial_dims)
        layers: list[nn.Module] = []
        size, width, channels, depth = image_size, base_channels, in_channels, 0
        while size > 4:
            layers.append(
                maybe_spectral_norm(conv(channels, width, 4, 2, 1, bias=False), spectral_norm)
            )
            if batch_norm and not spectral_norm and depth > 0:
                layers.append(batch_norm_type(spatial_dims)(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels, size, depth = width, (size + 2 - 4) // 2 + 1, depth + 1
            width = base_channels * min(2 ** (depth), MAX_WIDTH_FACTOR)
        self.features = nn.Sequential(*layers)
        self.feature_channels = channels
        self.head = maybe_spectral_norm(nn.Linear(channels, 1), spectral_norm)
        self.embed: nn.Module | None = None
        if num_classes > 1:
            self.embed = maybe_spectral_norm(nn.Embedding(num_classes, channels), spectral_norm)
        self.classifier: nn.Module | None = None
        if class_head and num_classes > 1:
            self.classifier = maybe_spectral_norm(nn.Linear(channels, num_classes), spectral_norm)
        dcgan_init(self)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, with_logits: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).sum(dim=tuple(range(2, x.ndim)))
        score = self.head(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this projection discriminator needs class labels")
            score = score + (self.embed(labels).to(h.dtype) * h).sum(dim=1)
        if with_logits:
            if self.classifier is None:
                raise ValueError("this discriminator has no class head (class_head=True)")
            return score, self.classifier(h)
        return score


class PerClassNetworks(nn.Module):
    """One unconditional network per class: each input goes through its class's network.

    The networks share nothing, BatchNorm statistics included, so each learns its class from that
    class's images alone (as training one GAN per class, Frid-Adar et al. 2018). Outputs come back
    in the input's order.

    >>> import torch
    >>> nets = PerClassNetworks([DCGANGenerator(16, 1, 28, 8), DCGANGenerator(16, 1, 28, 8)])
    >>> nets(torch.randn(3, 16), torch.tensor([1, 0, 1])).shape
    torch.Size([3, 1, 28, 28])
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("per-class networks need class labels")
        groups = [torch.nonzero(labels == c).squeeze(1) for c in range(len(self.nets))]
        order = torch.cat(groups)
        if len(order) != len(labels):
            raise ValueError(f"labels outside 0..{len(self.nets) - 1}: {labels.unique().tolist()}")
        # while training, a class missing from the batch still runs (on no images: zero
        # gradients, BatchNorm statistics unchanged), so every process of a
        # DistributedDataParallel run updates every parameter alike
        grad = torch.is_grad_enabled()
        outputs = [net(x[i]) for net, i in zip(self.nets, groups, strict=True) if len(i) or grad]
        return torch.cat(outputs)[torch.argsort(order)]
