"""The PatchGAN discriminator, generic in ``spatial_dims`` (2 or 3).

``n_layers`` 4x4 stride-2 convolutions, then two 4x4 stride-1 convolutions giving one score per
overlapping patch (70x70 pixels for ``n_layers=3``; Isola et al. 2017). The intermediate
activations are available for feature-matching (MedGAN-style perceptual) losses. Each side must
be at least ``3 * 2 ** n_layers``.

>>> import torch
>>> d = PatchDiscriminator(2, channels=8, n_layers=2)
>>> scores, features = d(torch.zeros(3, 2, 16, 16), return_features=True)
>>> scores.shape, len(features)
(torch.Size([3, 1, 2, 2]), 3)
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import nn

from medisynth.errors import ConfigError
from medisynth.nets.layers import conv_type, maybe_spectral_norm
from medisynth.nets.unet import Norm, norm_layer


def patchgan_min_size(n_layers: int) -> int:
    """The smallest image side a :class:`PatchDiscriminator` with ``n_layers`` accepts."""
    return 3 * 2**n_layers


class PatchDiscriminator(nn.Module):
    """PatchGAN ``(N, in_channels, *S) -> (N, 1, *S')`` raw scores (no sigmoid).

    Args:
        in_channels: input channels (source + target channels for a conditional D).
        channels: width of the first layer (doubling per layer, at most 8x).
        n_layers: stride-2 layers.
        spatial_dims: 2 or 3.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
        spectral_norm: spectral-normalise every convolution.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 64,
        n_layers: int = 3,
        spatial_dims: int = 2,
        norm: Norm = "instance",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"PatchDiscriminator needs n_layers >= 1, got {n_layers}")
        conv = conv_type(spatial_dims)
        self.n_layers = n_layers
        blocks: list[nn.Module] = [
            nn.Sequential(
                maybe_spectral_norm(conv(in_channels, channels, 4, 2, 1), spectral_norm),
                nn.LeakyReLU(0.2),
            )
        ]
        width = channels
        for i in range(1, n_layers + 1):
            out = min(channels * 2**i, channels * 8)
            stride = 2 if i < n_layers else 1
            blocks.append(
                nn.Sequential(
                    maybe_spectral_norm(
                        conv(width, out, 4, stride, 1, bias=norm == "none"), spectral_norm
                    ),
                    norm_layer(norm, out, spatial_dims),
                    nn.LeakyReLU(0.2),
                )
            )
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.head = maybe_spectral_norm(conv(width, 1, 4, 1, 1), spectral_norm)

    def check_size(self, shape: tuple[int, ...]) -> None:
        """ConfigError when an image of spatial ``shape`` is too small for this network."""
        smallest = patchgan_min_size(self.n_layers)
        if min(shape) < smallest:
            raise ConfigError(
                f"the PatchGAN discriminator with {self.n_layers} layers needs image sides of at "
                f"least {smallest}, got {tuple(shape)}; lower model.d_layers"
            )

    @overload
    def forward(self, x: torch.Tensor, return_features: Literal[False] = False) -> torch.Tensor: ...

    @overload
    def forward(
        self, x: torch.Tensor, return_features: Literal[True]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]: ...

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        h = x
        for block in self.blocks:
            h = block(h)
            features.append(h)
        scores = self.head(h)
        return (scores, features) if return_features else scores
