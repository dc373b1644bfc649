"""The multi-scale patch GAN family (Uzunova et al., MICCAI 2019): high-resolution 3D volumes
and large 2D images in bounded memory.

Level 0 is a GAN on the whole image at low resolution (``1 / 2**levels`` of the training
grid, e.g. 16^3 for 64^3 volumes with two levels), from a noise map (local noise, a global
code and the positions' coordinates) and optionally from a class label and/or a condition
(label map, sketch, other contrast). Levels 1..L are patch GANs: each takes the upsampled patch
of the level below (+ the condition patch) and produces the x2 patch as a residual over it.
Losses: hinge (or LSGAN) for every level plus ``l1_weight`` x L1 to the real patch (levels >= 1,
and level 0 when conditioned on an image). Each discriminator sees its image concatenated with
the low-resolution context, as in the authors' code; level 0's also sees the batch's spread
(minibatch standard deviation) and DiffAugment-translated images, which keeps it from
collapsing to empty images on sparse data such as AdrenalMNIST3D (see ``docs/results.md``).

Training samples ``patches_per_volume`` random patches per volume and level per step, with
teacher forcing (the level-l input is the real image downsampled to level l-1 and upsampled);
the full-resolution volume never goes through a network. Sampling runs the whole pipeline in
tiles (:mod:`medisynth.gans.multiscale_tiling`), so any size can be generated
(:meth:`MultiScaleGAN.sample_tiled`; files: :mod:`medisynth.apply.volumes`).

>>> import torch
>>> from medisynth.gans.base import DataInfo
>>> data = DataInfo(channels=1, spatial_shape=(32, 32, 32))
>>> cfg = MultiScaleConfig(levels=2, latent_dim=4, g0_channels=4, g_channels=4, d_channels=4,
...                        res_blocks=1, patch_size=16)
>>> gan = MultiScaleGAN.build(cfg, data)
>>> sorted(gan.train_step({"image": torch.rand(2, 1, 32, 32, 32) * 2 - 1}))
['d0_loss', 'd_loss', 'g_loss', 'l1', 'spread0']
>>> gan.sample(2).shape
torch.Size([2, 1, 32, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from medisynth.errors import ConfigError
from medisynth.gans.augment import diff_augment
from medisynth.gans.base import GANFamily, frozen, unwrap
from medisynth.gans.discriminator_augment import Augmentation
from medisynth.gans.multiscale_tiling import (
    Ramp,
    Scratch,
    TileSettings,
    TopLevels,
    level_shapes,
    synthesize,
)
from medisynth.losses import discriminator_loss, generator_loss, mode_seeking_ratio
from medisynth.nets.multiscale import (
    NOISE_FACTOR,
    MultiScaleDiscriminator,
    MultiScaleGenerator,
    downsample,
    noise_map,
    upsample2,
)
from medisynth.precision import Precision, precision_context
from medisynth.settings import IMAGE_FORMATS, MASK_FORMATS, FamilyConfig

#: DiffAugment policy of level 0's discriminator by default
LEVEL0_AUGMENTATION: tuple[Augmentation, ...] = ("translation",)
GRID_SEED = 20_191_013  # fixed noise for monitoring grids (MICCAI 2019 opening day)


class MultiScaleConfig(FamilyConfig):
    """Settings of the multi-scale patch GAN (``model:`` section of a run config).

    Attributes:
        levels: patch levels above level 0 (each doubles the resolution); the training images'
            sides must be multiples of ``4 * 2**levels``.
        latent_dim: channels of level 0's noise map (at 1/4 of the level-0 grid).
        g0_channels: width of the level-0 generator (x2, x4 at its coarser stages).
        g_channels: width of the patch generators.
        d_channels: first-layer width of every discriminator.
        res_blocks: residual blocks per patch generator.
        patch_size: side of the training patches of levels >= 1 (at that level's resolution).
        patches_per_volume: random patches per volume and level per step.
        l1_weight: weight of the L1 term (lambda).
        spectral_norm: spectral-normalise the discriminators.
        loss: adversarial loss of every level, ``"lsgan"`` or ``"hinge"``.
        minibatch_std: give the level-0 discriminator the batch's feature spread (a
            :class:`~medisynth.nets.multiscale.MinibatchStd` channel), so a generator that
            makes the same (e.g. empty) volume every time is caught.
        diffaugment: DiffAugment policy for the images the level-0 discriminator sees (with
            their condition); small data sets need it (``[]`` = off).
        diversity_weight: weight of a mode-seeking loss on level 0 (Mao et al., CVPR 2019): each
            step draws a second noise map per image and rewards level 0 for making the two
            images differ (``|G(z1) - G(z2)| / |z1 - z2|``), against within-class collapse
            (0 = off).
        lr_g, lr_d: Adam learning rates.
        betas: Adam betas of level 0 (generator and discriminator).
        patch_betas: Adam betas of the patch levels.
        image_key: the batch entry holding the images (``"target"`` for paired datasets).
        condition_key: the batch entry holding the condition (``"source"``, ``"mask"``), or
            ``None`` for an unconditional model.
        condition_channels: channels of the condition (needed with ``condition_key``).
        conditional: class-conditional level 0 when the data has more than one class (the
            label's embedding joins the noise map; the level-0 discriminator sees one-hot label
            maps); the patch levels, which only add detail, are shared by all classes.
        tile, overlap, tile_batch, ramp: tiled inference (see
            :class:`~medisynth.gans.multiscale_tiling.TileSettings`).
        grid_size: volumes in monitoring grids (3D cubes show three orthogonal mid-slices).
    """

    family: Literal["multiscale"] = "multiscale"
    levels: int = Field(default=2, ge=1, le=6)
    latent_dim: int = Field(default=16, ge=1)
    g0_channels: int = Field(default=32, ge=1)
    g_channels: int = Field(default=16, ge=1)
    d_channels: int = Field(default=16, ge=1)
    res_blocks: int = Field(default=2, ge=0, le=16)
    patch_size: int = Field(default=32, ge=8)
    patches_per_volume: int = Field(default=1, ge=1)
    l1_weight: float = Field(default=10.0, ge=0)
    spectral_norm: bool = True
    loss: Literal["lsgan", "hinge"] = "hinge"
    minibatch_std: bool = True
    diffaugment: list[Augmentation] = Field(default_factory=lambda: list(LEVEL0_AUGMENTATION))
    diversity_weight: float = Field(default=0.0, ge=0)
    lr_g: float = Field(default=2e-4, gt=0)
    lr_d: float = Field(default=4e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    patch_betas: tuple[float, float] = (0.5, 0.999)
    image_key: str = "image"
    condition_key: str | None = None
    condition_channels: int = Field(default=0, ge=0)
    conditional: bool = True
    tile: int = Field(default=64, ge=8)
    overlap: int = Field(default=8, ge=0)
    tile_batch: int = Field(default=2, ge=1)
    ramp: Ramp = "linear"
    grid_size: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _condition_pair(self) -> MultiScaleConfig:
        if (self.condition_key is None) != (self.condition_channels == 0):
            raise ValueError(
                "give model.condition_key and model.condition_channels together "
                "(both unset for an unconditional model)"
            )
        if 2 * self.overlap > self.tile:
            raise ValueError(f"overlap {self.overlap} must be at most half the tile {self.tile}")
        return self


def _crop(x: torch.Tensor, start: tuple[int, ...], size: tuple[int, ...]) -> torch.Tensor:
    index = (slice(None),) + tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))
    return x[index]


def _upsampled_crop(
    low: torch.Tensor, start: tuple[int, ...], size: tuple[int, ...]
) -> torch.Tensor:
    """``_crop(upsample2(low), start, size)`` for even ``start``/``size``, upsampling only the
    window that patch needs (plus the one-voxel margin linear interpolation reads)."""
    sides = low.shape[1:]
    lo = [max(s // 2 - 1, 0) for s in start]
    hi = [min(s // 2 + n // 2 + 1, d) for s, n, d in zip(start, size, sides, strict=True)]
    window = low[(slice(None),) + tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    up = upsample2(window[None])[0]
    return _crop(up, tuple(s - 2 * a for s, a in zip(start, lo, strict=True)), size)


class MultiScaleGAN(GANFamily):
    """Level-0 GAN + per-level patch GANs trained together (see the module doc)."""

    config_class = MultiScaleConfig
    ema_names = ("generator",)
    config: MultiScaleConfig
    #: images (``model.image_key: image``); or the targets of paired / mask data
    #: (``image_key: target``, conditioned on ``condition_key: source``)
    data_formats = IMAGE_FORMATS | {"paired"} | MASK_FORMATS
    tiled_volumes = True
    tiny_settings = {
        "levels": 1, "latent_dim": 3, "g0_channels": 4, "g_channels": 4, "d_channels": 4,
        "res_blocks": 1, "patch_size": 8, "tile": 16, "overlap": 4,
    }  # fmt: skip

    def setup(self, training: bool) -> None:
        cfg, data = self.config, self.data
        self.levels = cfg.levels
        unit = NOISE_FACTOR * 2**cfg.levels
        if any(s % unit for s in data.spatial_shape):
            raise ConfigError(
                f"the multiscale family with model.levels={cfg.levels} needs image sides that are "
                f"multiples of {unit} (level 0 at 1/{2**cfg.levels} of the image, its noise map "
                f"at 1/{NOISE_FACTOR} of that); got {data.spatial_shape}. Set data.image_size or "
                "lower model.levels"
            )
        if data.spatial_dims not in (2, 3):
            raise ConfigError(f"images must be 2D or 3D, got {data.spatial_shape}")
        self.num_classes = data.num_classes if cfg.conditional and data.num_classes > 1 else 0
        self.shapes = level_shapes(data.spatial_shape, cfg.levels)
        self.patch_shapes = [self.shapes[0]] + [
            tuple(min(cfg.patch_size, s) // 2 * 2 for s in shape) for shape in self.shapes[1:]
        ]
        generator = MultiScaleGenerator(
            cfg.levels,
            data.channels,
            cfg.latent_dim,
            cfg.g0_channels,
            cfg.g_channels,
            cfg.res_blocks,
            cfg.condition_channels,
            data.spatial_dims,
            self.num_classes,
        )
        self.nets["generator"] = generator.to(self.context.device)
        self._grid_conditions: torch.Tensor | None = None
        if not training:
            return
        discriminator = MultiScaleDiscriminator(
            [min(shape) for shape in self.patch_shapes],
            data.channels,
            cfg.d_channels,
            cfg.condition_channels,
            cfg.spectral_norm,
            data.spatial_dims,
            cfg.minibatch_std,
            self.num_classes,
        )
        self.nets["discriminator"] = discriminator.to(self.context.device)
        # level 0 (a GAN from noise) and the patch levels (L1-dominated) get their own betas
        self.optimizers["generator"] = torch.optim.Adam(
            [
                {"params": generator.base.parameters(), "betas": cfg.betas},
                {"params": generator.refiners.parameters(), "betas": cfg.patch_betas},
            ],
            lr=cfg.lr_g,
        )
        self.optimizers["discriminator"] = torch.optim.Adam(
            [
                {"params": discriminator.discs[0].parameters(), "betas": cfg.betas},
                {"params": discriminator.discs[1:].parameters(), "betas": cfg.patch_betas},
            ],
            lr=cfg.lr_d,
        )

    # ------------------------------------------------------------------ training
    def _condition(self, batch: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor | None:
        key = self.config.condition_key
        if key is None:
            return None
        if key not in batch:
            raise ConfigError(
                f"model.condition_key={key!r} but the batch has only {', '.join(batch)}"
            )
        cond = batch[key].to(self.context.device).float()
        if cond.ndim == like.ndim - 1:  # label maps without a channel axis
            cond = cond.unsqueeze(1)
        if cond.shape[1] != self.config.condition_channels or cond.shape[2:] != like.shape[2:]:
            raise ConfigError(
                f"condition {tuple(cond.shape[1:])} does not fit images {tuple(like.shape[1:])} "
                f"with model.condition_channels={self.config.condition_channels}"
            )
        return cond

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg, ctx = self.config, self.context
        if cfg.image_key not in batch:
            raise ConfigError(
                f"model.image_key={cfg.image_key!r} but the batch has only {', '.join(batch)}"
            )
        real = ctx.memory_format(batch[cfg.image_key].float())
        cond = self._condition(batch, real)
        labels = self._labels(batch)
        if cond is not None and self._grid_conditions is None:
            self._grid_conditions = cond[: cfg.grid_size].detach().cpu()
        n = real.shape[0]
        with torch.no_grad():
            reals, conds, ups, targets, cond_patches = self._teacher_patches(real, cond)
        grid = tuple(s // NOISE_FACTOR for s in self.shapes[0])
        seeking = cfg.diversity_weight > 0  # level 0 also makes a second image per input
        noise = ctx.memory_format(noise_map(cfg.latent_dim, grid, 2 * n if seeking else n))
        generator = self.nets["generator"]

        def level0_batch(t: torch.Tensor | None) -> torch.Tensor | None:
            return torch.cat([t, t]) if seeking and t is not None else t

        with ctx.autocast():
            fakes = generator(
                noise, level0_batch(conds[0]), ups, cond_patches, level0_batch(labels)
            )
        diversity = None
        if seeking:  # mode seeking: |G(z1) - G(z2)| / |z1 - z2|
            fakes[0], other = fakes[0][:n], fakes[0][n:]
            diversity = mode_seeking_ratio(fakes[0], other, noise[:n], noise[n:])
        contexts: list[torch.Tensor | None] = [conds[0]]
        for up, cp in zip(ups, cond_patches, strict=True):
            contexts.append(up if cp is None else torch.cat([up, cp], dim=1))
        reals_seen = [reals[0], *targets]
        d_loss, d0_loss = self._discriminator_step(reals_seen, fakes, contexts, labels)
        g_loss, l1 = self._generator_step(reals_seen, fakes, contexts, labels, cond, diversity)
        losses = {
            "d_loss": d_loss,
            "d0_loss": d0_loss,
            "g_loss": g_loss,
            "l1": l1,
            # voxel-wise spread of the level-0 batch: ~0 when level 0 makes one image only
            "spread0": float(fakes[0].detach().float().std(dim=0).mean()) if n > 1 else 0.0,
        }
        if diversity is not None:
            losses["diversity0"] = float(diversity.detach())
        return losses

    def _teacher_patches(
        self, real: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[
        list[torch.Tensor],
        list[torch.Tensor | None],
        list[torch.Tensor],
        list[torch.Tensor],
        list[torch.Tensor | None],
    ]:
        """Teacher forcing: the real images (and conditions) at every level, and for each
        level >= 1 ``patches_per_volume`` random patches per image: the upsampled level below,
        the real patch and the condition patch."""
        cfg, levels, n = self.config, self.levels, real.shape[0]
        reals = [downsample(real, 2 ** (levels - lvl)) for lvl in range(levels + 1)]
        conds = [
            None if cond is None else downsample(cond, 2 ** (levels - lvl))
            for lvl in range(levels + 1)
        ]
        ups, targets, cond_patches = [], [], []
        for lvl in range(1, levels + 1):
            size = self.patch_shapes[lvl]
            picks = []
            for _ in range(cfg.patches_per_volume):
                for i in range(n):
                    start = tuple(
                        2 * int(torch.randint(0, (s - p) // 2 + 1, ()))
                        for s, p in zip(self.shapes[lvl], size, strict=True)
                    )
                    picks.append((i, start))
            low = reals[lvl - 1]
            ups.append(torch.stack([_upsampled_crop(low[i], s, size) for i, s in picks]))
            targets.append(torch.stack([_crop(reals[lvl][i], s, size) for i, s in picks]))
            c = conds[lvl]
            cond_patches.append(
                None if c is None else torch.stack([_crop(c[i], s, size) for i, s in picks])
            )
        return reals, conds, ups, targets, cond_patches

    def _discriminator_step(
        self,
        reals: list[torch.Tensor],
        fakes: list[torch.Tensor],
        contexts: list[torch.Tensor | None],
        labels: torch.Tensor | None,
    ) -> tuple[float, float]:
        """Every level's discriminator on real and generated images together, one pass;
        returns the summed loss and level 0's."""
        cfg, ctx = self.config, self.context
        with ctx.autocast():
            both = [
                torch.cat([r, f.detach().to(r.dtype)]) for r, f in zip(reals, fakes, strict=True)
            ]
            both_ctx = [None if c is None else torch.cat([c, c]) for c in contexts]
            both[0], both_ctx[0] = self._augment0(both[0], both_ctx[0])
            both_ctx[0] = self._with_labels(
                both_ctx[0], None if labels is None else torch.cat([labels, labels]), both[0]
            )
            scores = self.nets["discriminator"](both, both_ctx)
            d_losses = [
                discriminator_loss(cfg.loss, s[: len(s) // 2], s[len(s) // 2 :]) for s in scores
            ]
            d_loss = sum(d_losses)
        assert isinstance(d_loss, torch.Tensor)
        ctx.backward(d_loss)
        ctx.step(self.optimizers["discriminator"])
        return float(d_loss.detach()), float(d_losses[0].detach())

    def _generator_step(
        self,
        reals: list[torch.Tensor],
        fakes: list[torch.Tensor],
        contexts: list[torch.Tensor | None],
        labels: torch.Tensor | None,
        cond: torch.Tensor | None,
        diversity: torch.Tensor | None,
    ) -> tuple[float, float]:
        """Adversarial + L1 (+ mode seeking) through the frozen plain discriminators; returns
        the generator loss and the L1 term."""
        cfg, ctx = self.config, self.context
        with frozen(unwrap(self.nets["discriminator"])) as critic:
            with ctx.autocast():
                seen, seen_ctx = list(fakes), list(contexts)
                seen[0], seen_ctx[0] = self._augment0(fakes[0], contexts[0])
                seen_ctx[0] = self._with_labels(seen_ctx[0], labels, seen[0])
                g_adv = sum(generator_loss(cfg.loss, s) for s in critic(seen, seen_ctx))
                first = 0 if cond is not None else 1
                l1 = sum(
                    (fakes[lvl].float() - reals[lvl].float()).abs().mean()
                    for lvl in range(first, self.levels + 1)
                )
                g_loss = g_adv + cfg.l1_weight * l1
                if diversity is not None:
                    g_loss = g_loss + cfg.diversity_weight / (diversity + 1e-5)
            assert isinstance(g_loss, torch.Tensor) and isinstance(l1, torch.Tensor)
            ctx.backward(g_loss)
            ctx.step(self.optimizers["generator"])
        return float(g_loss.detach()), float(l1.detach())

    def _labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        if "label" not in batch:
            raise ConfigError(
                "this model is class-conditional (model.conditional) but the batch has no "
                "'label'; set model.conditional: false for unlabelled data"
            )
        return batch["label"].to(self.context.device).long().view(-1)

    def _with_labels(
        self, context: torch.Tensor | None, labels: torch.Tensor | None, like: torch.Tensor
    ) -> torch.Tensor | None:
        """Level 0's discriminator context plus one-hot label maps (class-conditional models)."""
        if labels is None:
            return context
        onehot = torch.nn.functional.one_hot(labels, self.num_classes).to(like.dtype)
        maps = onehot.view(*onehot.shape, *(1,) * (like.ndim - 2)).expand(-1, -1, *like.shape[2:])
        return maps if context is None else torch.cat([context, maps.to(context.dtype)], dim=1)

    def _augment0(
        self, image: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """DiffAugment of level 0's discriminator input, image and condition moved together."""
        policy = self.config.diffaugment
        if not policy:
            return image, context
        if context is None:
            return diff_augment(image, policy), None
        both = diff_augment(torch.cat([image, context.to(image.dtype)], dim=1), policy)
        return both[:, : image.shape[1]], both[:, image.shape[1] :]

    # ------------------------------------------------------------------ sampling
    def inference_generator(self) -> MultiScaleGenerator:
        """The averaged (EMA) generators when the engine keeps them, else the live ones."""
        net = self.ema_nets.get("generator", unwrap(self.nets["generator"]))
        assert isinstance(net, MultiScaleGenerator)
        return net

    def tile_settings(self) -> TileSettings:
        cfg = self.config
        return TileSettings(cfg.tile, cfg.overlap, cfg.tile_batch, cfg.ramp)

    def tiled_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        """``size`` rounded up to multiples of level 0's unit, ``4 * 2**levels``."""
        unit = NOISE_FACTOR * 2**self.levels
        return tuple(math.ceil(s / unit) * unit for s in size)

    def refine_factors(self) -> tuple[int, ...]:
        """2, 4, ... up to ``2**levels``: the top ``k`` refiners refine by ``2**k``."""
        return tuple(2**k for k in range(1, self.levels + 1))

    def sample_tiled(
        self,
        out: np.ndarray,
        *,
        generator: torch.Generator | None = None,
        label: int | None = None,
        condition: np.ndarray | None = None,
        start: np.ndarray | None = None,
        settings: TileSettings | None = None,
        scratch: Scratch | None = None,
        precision: Precision = "fp32",
        progress: bool = False,
    ) -> None:
        """One image of ``out``'s grid through the tiled pipeline (see
        :meth:`GANFamily.sample_tiled`); with ``start``, only the top refiners run."""
        autocast, channels_last = precision_context(precision, self.context.device)
        if channels_last:
            fmt = torch.channels_last if self.data.spatial_dims == 2 else torch.channels_last_3d
            self.inference_generator().to(memory_format=fmt)  # type: ignore[call-overload]
        net = self.inference_generator()
        size = tuple(out.shape[1:])
        if start is not None:
            if net.cond_channels:
                raise ConfigError(
                    "refining a given volume works with unconditional models; generate from "
                    "a condition instead"
                )
            k = round(math.log2(size[0] / start.shape[1])) if start.shape[1] else 0
            if 2**k not in self.refine_factors():
                raise ConfigError(
                    f"a start image of shape {tuple(start.shape[1:])} cannot be refined to "
                    f"{size}: this model refines by "
                    f"{', '.join(map(str, self.refine_factors()))}"
                )
            # the start volume stands for level (levels - k); only the top k refiners run
            net = TopLevels(net, k)
        synthesize(
            net,
            size,
            noise=generator,
            condition=condition,
            label=(label or 0) if self.num_classes and start is None else label,
            start=start,
            settings=settings or self.tile_settings(),
            scratch=scratch,
            out=out,
            device=self.context.device,
            autocast=autocast,
            channels_last=channels_last,
            progress=progress,
        )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        conditions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` whole images at the training resolution in [-1, 1], through the tiled pipeline.

        ``labels`` ``(n,)`` pick the classes of a class-conditional model (default: classes in
        turn; ignored by other models); a model conditioned on images needs ``conditions``
        ``(n, Cc, *spatial)``.
        """
        if self.config.condition_key is not None and conditions is None:
            raise ConfigError("this model is conditional: pass conditions=(n, Cc, *spatial)")
        if conditions is not None and len(conditions) != n:
            raise ConfigError(f"need {n} conditions, got {len(conditions)}")
        net = self.inference_generator()
        out = []
        for i in range(n):
            cond = None if conditions is None else conditions[i].float().cpu().numpy()
            label = None
            if self.num_classes:
                label = int(labels[i]) if labels is not None else i % self.num_classes
            image = synthesize(
                net,
                self.data.spatial_shape,
                noise=generator,
                condition=cond,
                label=label,
                settings=self.tile_settings(),
                device=self.context.device,
                autocast=self.context.autocast,
                channels_last=self.context.channels_last,
            )
            out.append(torch.from_numpy(np.clip(image, -1.0, 1.0)))
        if not out:
            return torch.empty(0, self.data.channels, *self.data.spatial_shape)
        return torch.stack(out)

    def apply(
        self, conditions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Translate condition volumes ``(n, Cc, *spatial)`` (conditional models)."""
        return self.sample(len(conditions), generator=generator, conditions=conditions)

    def sample_grid(self) -> tuple[torch.Tensor, int]:
        """Fixed-noise samples; 3D cubes as rows of three orthogonal mid-slices."""
        count = self.config.grid_size
        conditions = None
        if self.config.condition_key is not None:
            if self._grid_conditions is None:
                return torch.zeros(1, self.data.channels, *self.data.spatial_shape[-2:]), 1
            conditions = self._grid_conditions
            count = len(conditions)
        labels = torch.arange(count) % self.num_classes if self.num_classes else None
        images = self.sample(
            count,
            labels,
            generator=torch.Generator().manual_seed(GRID_SEED),
            conditions=conditions,
        )
        if len(self.data.spatial_shape) == 3:
            return orthogonal_slices(images), 3
        return images, count


def orthogonal_slices(volumes: torch.Tensor, fill: float = -1.0) -> torch.Tensor:
    """``(N, C, D, H, W)`` -> ``(3N, C, S, S)``: each volume's three mid-slices (axes 0, 1, 2),
    centred on ``fill`` (the background, -1 in model units) up to the longest side ``S``.

    >>> orthogonal_slices(torch.zeros(2, 1, 8, 8, 8)).shape
    torch.Size([6, 1, 8, 8])
    >>> orthogonal_slices(torch.zeros(1, 1, 4, 6, 8)).shape
    torch.Size([3, 1, 8, 8])
    """
    d, h, w = volumes.shape[2:]
    side = max(d, h, w)
    views = []
    for view in (volumes[:, :, d // 2], volumes[:, :, :, h // 2], volumes[:, :, :, :, w // 2]):
        rows, cols = view.shape[2:]
        top, left = (side - rows) // 2, (side - cols) // 2
        pad = (left, side - cols - left, top, side - rows - top)
        views.append(torch.nn.functional.pad(view, pad, value=fill))
    return torch.stack(views, dim=1).flatten(0, 1)
