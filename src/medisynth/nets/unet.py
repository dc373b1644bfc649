"""The pix2pix U-Net generator, generic in ``spatial_dims`` (2 or 3).

An encoder of 4x4 stride-2 convolutions, a decoder of 4x4 stride-2 transposed convolutions and a
skip connection from every encoder level to the decoder level of the same size (Isola et al.
2017). Each spatial side must be divisible by ``2 ** depth``. ``upsampling="resize"`` replaces
the transposed convolutions by nearest-neighbour x2 resizing + a 3x3 convolution, which cannot
make the checkerboard pattern of overlapping transposed kernels (Odena et al., Distill 2016).

>>> import torch
>>> net = UNet(1, 1, channels=8, depth=3)
>>> net(torch.zeros(2, 1, 16, 16)).shape
torch.Size([2, 1, 16, 16])
>>> UNet(2, 1, channels=4, depth=2, spatial_dims=3)(torch.zeros(1, 2, 8, 8, 8)).shape
torch.Size([1, 1, 8, 8, 8])
>>> UNet(1, 1, channels=4, depth=2, upsampling="resize")(torch.zeros(1, 1, 8, 8)).shape
torch.Size([1, 1, 8, 8])
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from medisynth.errors import ConfigError
from medisynth.nets.layers import conv_transpose_type, conv_type

Norm = Literal["instance", "batch", "none"]
Upsampling = Literal["transposed", "resize"]


def norm_layer(kind: str, channels: int, spatial_dims: int) -> nn.Module:
    """InstanceNorm (affine), BatchNorm or nothing, for ``spatial_dims`` 2 or 3."""
    if kind == "instance":
        cls: type[nn.Module] = nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d
        return cls(channels, affine=True)
    if kind == "batch":
        cls = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        return cls(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r}; known: instance, batch, none")


def check_divisible(shape: tuple[int, ...], factor: int, what: str) -> None:
    """ConfigError unless every side of ``shape`` is a positive multiple of ``factor``."""
    if any(s % factor or s < factor for s in shape):
        raise ConfigError(
            f"{what} needs every image side divisible by {factor}, got {tuple(shape)}; "
            "resize the images (data.image_size) or lower the network depth"
        )


class UNet(nn.Module):
    """U-Net generator ``(N, in_channels, *S) -> (N, out_channels, *S)`` in [-1, 1] (tanh).

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output image.
        channels: width of the first level; level ``i`` has ``min(channels * 2**i, 8 * channels)``.
        depth: number of stride-2 levels (>= 2); sides must be divisible by ``2 ** depth``.
        spatial_dims: 2 or 3.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
        dropout: dropout in the three innermost decoder levels (pix2pix's noise; 0 = off).
        upsampling: ``"transposed"`` (4x4 stride-2 transposed convolutions, pix2pix) or
            ``"resize"`` (nearest x2 + 3x3 convolution: no checkerboard artefacts).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int = 64,
        depth: int = 5,
        spatial_dims: int = 2,
        norm: Norm = "instance",
        dropout: float = 0.0,
        upsampling: Upsampling = "transposed",
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ConfigError(f"UNet depth must be at least 2, got {depth}")
        conv = conv_type(spatial_dims)

        def up(width_in: int, width_out: int, bias: bool = True) -> nn.Module:
            if upsampling == "resize":
                return nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    conv(width_in, width_out, 3, 1, 1, bias=bias),
                )
            return conv_transpose_type(spatial_dims)(width_in, width_out, 4, 2, 1, bias=bias)

        self.depth = depth
        self.spatial_dims = spatial_dims
        widths = [min(channels * 2**i, channels * 8) for i in range(depth)]
        downs: list[nn.Module] = [conv(in_channels, widths[0], 4, 2, 1)]
        for i in range(1, depth):
            innermost = i == depth - 1
            downs.append(
                nn.Sequential(
                    nn.LeakyReLU(0.2),
                    conv(widths[i - 1], widths[i], 4, 2, 1, bias=innermost or norm == "none"),
                    nn.Identity() if innermost else norm_layer(norm, widths[i], spatial_dims),
                )
            )
        self.downs = nn.ModuleList(downs)
        ups: list[nn.Module] = []
        for i in range(depth - 1, 0, -1):
            width_in = widths[i] if i == depth - 1 else 2 * widths[i]
            layers: list[nn.Module] = [
                nn.ReLU(),
                up(width_in, widths[i - 1], bias=norm == "none"),
                norm_layer(norm, widths[i - 1], spatial_dims),
            ]
            if dropout > 0 and i >= depth - 3:
                layers.append(nn.Dropout(dropout))
            ups.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList(ups)
        self.final = nn.Sequential(nn.ReLU(), up(2 * widths[0], out_channels), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        for j, up in enumerate(self.ups):
            h = torch.cat([up(h), skips[-(j + 2)]], dim=1)
        return self.final(h)
