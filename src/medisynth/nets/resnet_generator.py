"""The CycleGAN ResNet generator, generic in ``spatial_dims`` (2 or 3).

A 7x7 stem, ``n_down`` stride-2 convolutions, ``n_blocks`` residual blocks, ``n_down`` transposed
convolutions back up and a 7x7 tanh head, with reflection padding and InstanceNorm (Zhu et al.
2017, after Johnson et al. 2016). Sides must be divisible by ``2 ** n_down``.

>>> import torch
>>> ResnetGenerator(1, 1, channels=8, n_blocks=2)(torch.zeros(2, 1, 16, 16)).shape
torch.Size([2, 1, 16, 16])
>>> ResnetGenerator(1, 2, channels=4, n_blocks=1, spatial_dims=3)(torch.zeros(1, 1, 8, 8, 8)).shape
torch.Size([1, 2, 8, 8, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from medisynth.errors import ConfigError
from medisynth.nets.layers import conv_transpose_type, conv_type
from medisynth.nets.unet import Norm, norm_layer


class ResidualBlock(nn.Module):
    """``x + conv-norm-relu-conv-norm(x)`` with reflection padding."""

    def __init__(self, channels: int, spatial_dims: int = 2, norm: Norm = "instance") -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.body = nn.Sequential(
            conv(channels, channels, 3, 1, 1, padding_mode="reflect"),
            norm_layer(norm, channels, spatial_dims),
            nn.ReLU(),
            conv(channels, channels, 3, 1, 1, padding_mode="reflect"),
            norm_layer(norm, channels, spatial_dims),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """ResNet generator ``(N, in_channels, *S) -> (N, out_channels, *S)`` in [-1, 1].

    Args:
        in_channels, out_channels: image channels in and out.
        channels: width of the stem; each downsampling doubles it.
        n_blocks: residual blocks at the lowest resolution (6 for 128 px, 9 for 256 px).
        n_down: stride-2 downsamplings.
        spatial_dims: 2 or 3.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int = 64,
        n_blocks: int = 6,
        n_down: int = 2,
        spatial_dims: int = 2,
        norm: Norm = "instance",
    ) -> None:
        super().__init__()
        if n_blocks < 0 or n_down < 0:
            raise ConfigError("n_blocks and n_down must be >= 0")
        conv, up = conv_type(spatial_dims), conv_transpose_type(spatial_dims)
        self.n_down = n_down
        layers: list[nn.Module] = [
            conv(in_channels, channels, 7, 1, 3, padding_mode="reflect"),
            norm_layer(norm, channels, spatial_dims),
            nn.ReLU(),
        ]
        width = channels
        for _ in range(n_down):
            layers += [
                conv(width, 2 * width, 3, 2, 1),
                norm_layer(norm, 2 * width, spatial_dims),
                nn.ReLU(),
            ]
            width *= 2
        layers += [ResidualBlock(width, spatial_dims, norm) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [
                up(width, width // 2, 3, 2, 1, output_padding=1),
                norm_layer(norm, width // 2, spatial_dims),
                nn.ReLU(),
            ]
            width //= 2
        layers += [conv(width, out_channels, 7, 1, 3, padding_mode="reflect"), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
