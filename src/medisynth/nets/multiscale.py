"""Networks of the memory-efficient multi-scale patch GAN (Uzunova et al., MICCAI 2019), 2D or 3D.

* :class:`BaseGenerator` (level 0): the whole image at low resolution, from a noise map with
  ``latent_dim`` channels at 1/4 of the level-0 grid, optionally with a condition (label map,
  sketch, other contrast) at the level-0 resolution. PixelNorm, no batch statistics, so it is
  fully convolutional and can itself be run in tiles on grids larger than it was trained on.
* :class:`PatchRefiner` (levels 1..L): the upsampled patch of the level below (+ condition) ->
  the x2 patch, as a residual over the upsampled input (its last layer starts at zero, so an
  untrained refiner is plain linear interpolation). No normalisation: a patch's output does not
  depend on its neighbours, which is what makes tiled inference exact.
* :class:`PatchDiscriminator`: a PatchGAN on the image concatenated with its low-resolution
  context (the upsampled patch below, and the condition), as in the authors' code.
* :class:`MultiScaleGenerator` / :class:`MultiScaleDiscriminator`: every level in one module,
  so one training step is one forward pass (DDP-friendly).

>>> import torch
>>> g = MultiScaleGenerator(levels=2, channels=1, latent_dim=4, base_channels=8,
...                         patch_channels=4, res_blocks=1, spatial_dims=3)
>>> low = g.base(noise_map(4, (2, 2, 2), n=2))         # level 0: 8^3 from a 2^3 noise map
>>> up = upsample2(low)                                  # 16^3 upsampled input of level 1
>>> g.refiners[0](up).shape
torch.Size([2, 1, 16, 16, 16])
>>> bool(torch.equal(g.refiners[0](up), up))             # untrained: a pure interpolation
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.nets.layers import conv_type, maybe_spectral_norm

#: the level-0 generator's noise map is this many times coarser than its output
NOISE_FACTOR = 4


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """x2 linear (bi/trilinear, ``align_corners=False``) upsampling of ``(N, C, *spatial)``.

    Each output voxel depends on the input voxels within one voxel of it, so a window cropped
    with a one-voxel margin upsamples exactly like the whole image.
    """
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, scale_factor=2, mode=mode, align_corners=False)


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area (mean-of-block) downsampling by an integer ``factor`` (1 returns ``x``)."""
    if factor == 1:
        return x
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    return pool(x, factor)


def noise_channels(latent_dim: int, spatial_dims: int) -> int:
    """Channels of level 0's input map (see :func:`noise_map`)."""
    return 2 * latent_dim + spatial_dims


def noise_map(
    latent_dim: int,
    grid: Sequence[int],
    n: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Level 0's input ``(n, 2 * latent_dim + dims, *grid)``: a local noise map, a global code
    (one random vector per image, the same at every position) and each position's coordinates
    in (-1, 1) over the whole grid.

    The global code and the coordinates let a fully convolutional level 0 place one coherent
    object (an organ, a brain) in the image; local noise alone gives stationary texture. The
    map is cropped like any other input in tiled inference, so tiles stay exact.

    >>> z = noise_map(4, (2, 3), n=5, generator=torch.Generator().manual_seed(0))
    >>> z.shape, bool((z[:, 4:8, 0, 0] == z[:, 4:8, 1, 2]).all())
    (torch.Size([5, 10, 2, 3]), True)
    >>> z[0, 8:, :, 0].mul(6).round().tolist()  # coordinates of the cells (0, 0) and (1, 0)
    [[-3.0, 3.0], [-4.0, -4.0]]
    """
    local = torch.randn(n, latent_dim, *grid, generator=generator)
    code = torch.randn(n, latent_dim, *(1,) * len(grid), generator=generator)
    axes = [(torch.arange(g) + 0.5) / g * 2 - 1 for g in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]
    parts = [local, code.expand(-1, -1, *grid), coords.expand(n, *coords.shape[1:])]
    return torch.cat(parts, dim=1).to(device)


class PixelNorm(nn.Module):
    """Normalise each voxel's feature vector to unit RMS (Karras et al. 2018); tile-safe."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class BaseGenerator(nn.Module):
    """Level 0: noise map ``(N, noise_channels, *grid/4)`` from :func:`noise_map` (+ condition
    ``(N, Cc, *grid)``, + class labels ``(N,)``) -> image.

    Args:
        latent_dim: channels of the local noise and of the global code (see :func:`noise_map`).
        out_channels: image channels.
        channels: width at the output resolution (x2 and x4 at the coarser stages).
        cond_channels: channels of the condition (0 = unconditional).
        spatial_dims: 2 or 3.
        num_classes: classes of a class-conditional model (0 = none): a learned embedding of
            the label joins the noise map as ``latent_dim`` constant channels (tile-safe).
    """

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        channels: int = 32,
        cond_channels: int = 0,
        spatial_dims: int = 3,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.cond_channels = cond_channels
        self.spatial_dims = spatial_dims
        self.out_channels = out_channels
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        wide, mid = 4 * channels, 2 * channels
        in_channels = noise_channels(latent_dim, spatial_dims) + cond_channels
        in_channels += latent_dim if num_classes else 0
        self.stem = nn.Sequential(conv(in_channels, wide, 3, padding=1), PixelNorm(), _act())
        self.stage1 = nn.Sequential(
            conv(wide + cond_channels, mid, 3, padding=1), PixelNorm(), _act()
        )
        self.stage2 = nn.Sequential(
            conv(mid + cond_channels, channels, 3, padding=1), PixelNorm(), _act()
        )
        self.head = nn.Sequential(
            conv(channels + cond_channels, channels, 3, padding=1),
            _act(),
            conv(channels, out_channels, 3, padding=1),
            nn.Tanh(),
        )
        #: output voxels within this distance of a window edge differ from a whole-image pass
        #: (conv radii in output voxels: 1 at /4 = 4, +1 nearest-upsampling slack per stage)
        self.receptive_radius = 4 * 1 + 4 + 2 * 1 + 2 + 1 + 1 + 1

    def _with(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if not self.cond_channels:
            return x
        if cond is None:
            raise ValueError("this generator is conditional: give the condition")
        if cond.shape[2:] != x.shape[2:]:
            cond = downsample(cond, cond.shape[2] // x.shape[2])
        return torch.cat([x, cond.to(x.dtype)], dim=1)

    def forward(
        self,
        noise: torch.Tensor,
        cond: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: give the labels")
            code = self.embed(labels.to(noise.device).long()).to(noise.dtype)
            code = code.view(*code.shape, *(1,) * (noise.ndim - 2)).expand(-1, -1, *noise.shape[2:])
            noise = torch.cat([noise, code], dim=1)
        x = self.stem(self._with(noise, cond))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.stage1(self._with(x, cond))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.stage2(self._with(x, cond))
        out: torch.Tensor = self.head(self._with(x, cond))
        return out


class PatchRefiner(nn.Module):
    """Level l >= 1: upsampled patch ``(N, C, *p)`` (+ condition ``(N, Cc, *p)``) -> refined patch.

    ``out = up + residual(up, cond)``; the residual's last convolution starts at zero.

    Args:
        channels: image channels.
        width: feature channels.
        res_blocks: residual blocks (two 3-convolutions each).
        cond_channels: channels of the condition (0 = none).
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        channels: int,
        width: int = 16,
        res_blocks: int = 2,
        cond_channels: int = 0,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.cond_channels = cond_channels
        self.stem = nn.Sequential(conv(channels + cond_channels, width, 3, padding=1), _act())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                conv(width, width, 3, padding=1), _act(), conv(width, width, 3, padding=1)
            )
            for _ in range(res_blocks)
        )
        self.act = _act()
        self.out = conv(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]
        #: 3-convolutions on the path (in output voxels)
        self.receptive_radius = 2 + 2 * res_blocks

    def forward(self, up: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = up
        if self.cond_channels:
            if cond is None:
                raise ValueError("this refiner is conditional: give the condition")
            x = torch.cat([up, cond.to(up.dtype)], dim=1)
        h = self.stem(x)
        for block in self.blocks:
            h = self.act(h + block(h))
        residual: torch.Tensor = self.out(h)
        return up + residual.to(up.dtype)


class MinibatchStd(nn.Module):
    """Append the batch's mean feature standard deviation as one constant channel (Karras et
    al. 2018): a batch of identical images (mode collapse) is then visible to the critic.

    >>> MinibatchStd()(torch.zeros(3, 2, 4, 4)).shape
    torch.Size([3, 3, 4, 4])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = x.float().std(dim=0, unbiased=False).mean()
        return torch.cat([x, std.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``n_down`` stride-2 4-convolutions, then two 3-convolutions to a score map.

    Args:
        in_channels: image + context channels.
        width: channels of the first layer (x2 per downsampling, at most x8).
        n_down: stride-2 layers (2 suits 16-voxel inputs, 3 suits 32 and more).
        spectral_norm: spectral-normalise every convolution.
        spatial_dims: 2 or 3.
        minibatch_std: add a :class:`MinibatchStd` channel before the last two convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 16,
        n_down: int = 2,
        spectral_norm: bool = True,
        spatial_dims: int = 3,
        minibatch_std: bool = False,
    ) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(n_down):
            out = width * min(2**i, 8)
            layers += [maybe_spectral_norm(conv(channels, out, 4, 2, 1), spectral_norm), _act()]
            channels = out
        if minibatch_std:
            layers.append(MinibatchStd())
            channels += 1
        out = width * min(2**n_down, 8)
        layers += [maybe_spectral_norm(conv(channels, out, 3, 1, 1), spectral_norm), _act()]
        layers += [maybe_spectral_norm(conv(out, 1, 3, 1, 1), spectral_norm)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def n_down_for(size: int) -> int:
    """Downsamplings of a PatchGAN for inputs of ``size`` voxels a side (output >= 2 voxels)."""
    return max(1, min(3, int(math.log2(max(size, 2))) - 2))


class MultiScaleGenerator(nn.Module):
    """All generators: ``base`` (level 0) and ``refiners[l - 1]`` (level l = 1..levels).

    ``forward`` runs every level on its own inputs (training: one pass for all levels).
    """

    def __init__(
        self,
        levels: int,
        channels: int,
        latent_dim: int = 16,
        base_channels: int = 32,
        patch_channels: int = 16,
        res_blocks: int = 2,
        cond_channels: int = 0,
        spatial_dims: int = 3,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.levels = levels
        self.latent_dim = latent_dim
        self.spatial_dims = spatial_dims
        self.cond_channels = cond_channels
        self.num_classes = num_classes
        self.base = BaseGenerator(
            latent_dim, channels, base_channels, cond_channels, spatial_dims, num_classes
        )
        self.refiners = nn.ModuleList(
            PatchRefiner(channels, patch_channels, res_blocks, cond_channels, spatial_dims)
            for _ in range(levels)
        )

    def forward(
        self,
        noise: torch.Tensor,
        cond0: torch.Tensor | None,
        ups: list[torch.Tensor],
        conds: list[torch.Tensor | None],
        labels: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        outs = [self.base(noise, cond0, labels)]
        for refiner, up, cond in zip(self.refiners, ups, conds, strict=True):
            outs.append(refiner(up, cond))
        return outs


class MultiScaleDiscriminator(nn.Module):
    """One :class:`PatchDiscriminator` per level; ``forward`` scores every level at once.

    Args:
        sizes: the (smallest side of the) input of each level, to pick its depth.
        channels: image channels.
        width: first-layer width.
        cond_channels: condition channels (added to every level's context).
        minibatch_std: a :class:`MinibatchStd` channel in the level-0 discriminator.
        num_classes: classes of a class-conditional level 0 (one-hot maps join its context).
    """

    def __init__(
        self,
        sizes: list[int],
        channels: int,
        width: int = 16,
        cond_channels: int = 0,
        spectral_norm: bool = True,
        spatial_dims: int = 3,
        minibatch_std: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        discs = []
        for level, size in enumerate(sizes):
            context = cond_channels + (channels if level > 0 else num_classes)
            discs.append(
                PatchDiscriminator(
                    channels + context,
                    width,
                    n_down_for(size),
                    spectral_norm,
                    spatial_dims,
                    minibatch_std=minibatch_std and level == 0,
                )
            )
        self.discs = nn.ModuleList(discs)

    def forward(
        self, images: list[torch.Tensor], contexts: list[torch.Tensor | None]
    ) -> list[torch.Tensor]:
        scores = []
        for disc, image, context in zip(self.discs, images, contexts, strict=True):
            x = image if context is None else torch.cat([image, context.to(image.dtype)], dim=1)
            scores.append(disc(x))
        return scores
