"""A residual super-resolution generator (SRResNet/EDSR-style), generic in ``spatial_dims``.

``(N, C, *S) -> (N, C_out, *(scale * S))``: a head convolution, ``n_blocks`` residual blocks
without normalisation (EDSR, Lim et al. 2017) and a long skip, then ``log2(scale)`` upsampling
stages of nearest-neighbour x2 + 3-wide convolution (the resize-convolution of Odena et al. 2016;
pixel shuffle has no 3D form in torch, this works in 2D and 3D alike), and a tail convolution.
The network predicts a *residual* over plain interpolation of the input (bicubic in 2D,
trilinear in 3D, ``align_corners=False``); the tail starts at zero, so an untrained network
returns exactly the interpolation baseline.

>>> import torch
>>> net = SRResNet(1, channels=8, n_blocks=2, scale=4)
>>> x = torch.rand(2, 1, 6, 5)
>>> y = net(x)
>>> y.shape
torch.Size([2, 1, 24, 20])
>>> torch.allclose(y, upsample(x, 4))  # untrained: the interpolation baseline
True
>>> SRResNet(1, channels=4, n_blocks=1, scale=2, spatial_dims=3)(torch.rand(1, 1, 4, 4, 4)).shape
torch.Size([1, 1, 8, 8, 8])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import ConfigError
from medisynth.nets.layers import conv_type


def upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The interpolation baseline: bicubic for ``(N, C, H, W)``, trilinear for volumes
    (``align_corners=False``: the field of view's edges are kept, voxel centres move)."""
    mode = "bicubic" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)


def downsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Area (average-pooling) downsampling by ``scale`` along every spatial axis: each
    low-resolution pixel is the mean of a ``scale``-wide block of high-resolution pixels."""
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    return pool(x, kernel_size=scale, stride=scale)


class ResidualBlock(nn.Module):
    """conv - PReLU - conv, added to the input (scaled by ``res_scale``)."""

    def __init__(self, channels: int, spatial_dims: int, res_scale: float = 1.0) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.body = nn.Sequential(
            conv(channels, channels, 3, padding=1),
            nn.PReLU(channels),
            conv(channels, channels, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class SRResNet(nn.Module):
    """Residual super-resolution generator (see the module docstring).

    Args:
        in_channels: image channels (the output has ``out_channels``, default the same).
        channels: feature width.
        n_blocks: residual blocks.
        scale: upsampling factor, a power of two (2, 4, 8).
        spatial_dims: 2 or 3.
        out_channels: output channels (default ``in_channels``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 64,
        n_blocks: int = 16,
        scale: int = 2,
        spatial_dims: int = 2,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ConfigError(f"the SR generator upsamples by a power of two >= 2, got {scale}")
        conv = conv_type(spatial_dims)
        out_channels = out_channels or in_channels
        self.scale = scale
        self.skip_channels = in_channels == out_channels
        self.head = nn.Sequential(conv(in_channels, channels, 3, padding=1), nn.PReLU(channels))
        self.blocks = nn.Sequential(
            *(
                ResidualBlock(channels, spatial_dims, 0.1 if n_blocks > 8 else 1.0)
                for _ in range(n_blocks)
            ),  # fmt: skip
            conv(channels, channels, 3, padding=1),
        )
        self.up = nn.ModuleList(
            nn.Sequential(conv(channels, channels, 3, padding=1), nn.PReLU(channels))
            for _ in range(int(math.log2(scale)))
        )
        self.tail = conv(channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        assert self.tail.bias is not None
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.blocks(h)
        for stage in self.up:
            h = stage(F.interpolate(h, scale_factor=2, mode="nearest"))
        residual = self.tail(h)
        if not self.skip_channels:
            return residual
        return upsample(x, self.scale).to(residual.dtype) + residual
