"""The pix2pix family: paired image-to-image translation (e.g. T1 -> T2 MRI), 2D or 3D.

A U-Net generator and a conditional PatchGAN discriminator that sees (source, image) pairs,
trained with an adversarial loss (LSGAN or BCE) plus ``l1_weight`` x L1 to the target (Isola et
al. 2017). ``perceptual_weight > 0`` adds MedGAN's perceptual loss: the L1 distance between the
discriminator's features on the real and the translated pair (Armanious et al. 2020), and
``style_weight > 0`` its style loss: the distance between those features' Gram matrices.

Batches are ``{"source", "target"}`` tensors in [-1, 1] (``data.format: paired``). The model's
``DataInfo`` carries the target's intensity map as ``intensity_map`` and the source's as
``source_intensity_map``; :mod:`medisynth.apply.translate` applies a trained model to files.

>>> import torch
>>> from medisynth.gans.base import DataInfo
>>> data = DataInfo(channels=1, spatial_shape=(16, 16))
>>> gan = Pix2Pix.build(Pix2PixConfig(g_channels=4, g_depth=3, d_channels=4, d_layers=2), data)
>>> batch = {"source": torch.rand(2, 1, 16, 16) * 2 - 1, "target": torch.rand(2, 1, 16, 16)}
>>> sorted(gan.train_step(batch))
['d_loss', 'g_adv', 'l1']
>>> gan.translate(batch["source"]).shape
torch.Size([2, 1, 16, 16])
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from medisynth.errors import ConfigError
from medisynth.gans.augment import augment_pair
from medisynth.gans.base import GANFamily, Task, frozen, unwrap
from medisynth.losses import (
    SSIM_WINDOW,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    mode_seeking_ratio,
    ssim_loss,
    style_loss,
)
from medisynth.nets.patchgan import PatchDiscriminator
from medisynth.nets.unet import UNet, Upsampling, check_divisible
from medisynth.settings import MASK_FORMATS, FamilyConfig

GRID_IMAGES = 8  # pairs kept from the first batch for monitoring grids


class ImageToImageFamily(GANFamily):
    """Shared parts of the translation families: ``translate``, monitoring grids, packages.

    Translation models have no noise to sample from: :meth:`sample` translates the monitoring
    sources kept from the first training batch, and :meth:`translate` maps given images.
    """

    task: ClassVar[Task] = "translate"
    ema_names = ("generator",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.grid_pairs: dict[str, torch.Tensor] = {}

    @property
    def source_channels(self) -> int:
        return self.data.source_channels or self.data.channels

    @property
    def input_channels(self) -> int:
        """Channels :meth:`translate` takes: the source's, plus the histogram prior's (one)
        when the model was trained with ``data.source_prior``."""
        return self.source_channels + (self.data.source_prior is not None)

    @property
    def noise_channels(self) -> int:
        """Gaussian noise maps appended to the source (0: a deterministic translation)."""
        return int(getattr(self.config, "noise_channels", 0))

    def with_noise(
        self, source: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``source`` with ``noise_channels`` standard-normal maps appended (drawn on the CPU
        from ``generator`` when given, so a seed gives the same images on any device)."""
        if not self.noise_channels:
            return source
        cell = int(getattr(self.config, "noise_cell", 1))
        spatial = tuple(source.shape[2:])
        coarse = tuple(-(-side // cell) for side in spatial)  # ceil: cells cover the image
        shape = (source.shape[0], self.noise_channels, *coarse)
        if generator is not None:
            noise = torch.randn(shape, generator=generator).to(source.device)
        else:
            noise = torch.randn(shape, device=source.device)
        if coarse != spatial:  # smooth noise: cells bilinearly (trilinearly) interpolated
            mode = "bilinear" if len(spatial) == 2 else "trilinear"
            noise = torch.nn.functional.interpolate(noise, size=spatial, mode=mode)
            noise = noise / noise.std().clamp_min(1e-6)  # interpolation shrinks the spread
        return torch.cat([source, noise.to(source)], 1)

    def _remember_grid(self, batch: dict[str, torch.Tensor]) -> None:
        if not self.grid_pairs:
            self.grid_pairs = {
                k: batch[k][:GRID_IMAGES].detach().float().cpu() for k in ("source", "target")
            }

    def inference_nets(self) -> dict[str, nn.Module]:
        """Only the generator(s): a package needs no discriminator."""
        return {
            name: self.ema_nets.get(name, unwrap(net))
            for name, net in self.nets.items()
            if name.startswith("generator")
        }

    @torch.no_grad()
    def translate(
        self,
        images: torch.Tensor,
        batch_size: int = 16,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Map source-domain images in [-1, 1] ``(N, C, *spatial)`` to the target domain (CPU,
        float32), with the averaged generator when the engine kept one. A model with
        ``noise_channels`` draws fresh noise per image (from ``generator`` when given); a model
        with a source prior takes it as the last channel (``medisynth.apply.translate`` adds it)."""
        expected = 2 + self.data.spatial_dims
        if images.ndim != expected or images.shape[1] != self.input_channels:
            raise ConfigError(
                f"this {self.data.spatial_dims}D model translates ({self.input_channels}, "
                f"{', '.join('?' * self.data.spatial_dims)}) images, got {tuple(images.shape[1:])}"
            )
        net = self._inference_generator()
        was_training = net.training
        net.eval()
        out = []
        try:
            for start in range(0, len(images), batch_size):
                part = images[start : start + batch_size].float()
                part = self.with_noise(part, generator).to(self.context.device)
                with self.context.autocast():
                    out.append(net(part).float().cpu())
        finally:
            net.train(was_training)
        return torch.cat(out) if out else torch.empty(0)

    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Outputs for the first ``n`` monitoring sources (a translation model draws no noise:
        the apply layer calls :meth:`translate` on your own images; ``task`` says so)."""
        if not self.grid_pairs:
            raise self.unable("sample from noise")
        return self.translate(self.grid_pairs["source"][:n], generator=generator)

    def sample_grid(self) -> tuple[torch.Tensor, int]:
        """Rows: sources (when shaped like targets), translations, targets."""
        if not self.grid_pairs:
            size = (1, self.data.channels, *self.data.spatial_shape)
            return torch.zeros(size), 1
        source, target = self.grid_pairs["source"], self.grid_pairs["target"]
        rows = [self.translate(source, generator=torch.Generator().manual_seed(0)), target]
        if self.source_channels == target.shape[1]:
            rows.insert(0, source[:, : self.source_channels])
        return torch.cat(rows), len(source)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "grid_pairs": dict(self.grid_pairs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.grid_pairs = dict(state.get("grid_pairs", {}))

    def _pair(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if "source" not in batch or "target" not in batch:
            raise ConfigError(
                f"the {self.config.family} family needs batches with 'source' and 'target' "
                f"(data.format: paired or unpaired), got keys {sorted(batch)}"
            )
        if self.data.source_prior is not None:  # the prior travels as the last source channel
            batch = {**batch, "source": torch.cat([batch["source"], batch["prior"]], 1)}
        self._remember_grid(batch)
        return (
            self.context.memory_format(batch["source"]),
            self.context.memory_format(batch["target"]),
        )


class PriorResidual(nn.Module):
    """``prior + net(x)`` clamped to [-1, 1], the prior being channel ``prior_channel`` of
    ``x``; ``net``'s last layer starts at zero, so an untrained model returns the prior.

    >>> import torch
    >>> model = PriorResidual(UNet(2, 1, channels=4, depth=2), prior_channel=1)
    >>> x = torch.rand(1, 2, 8, 8) * 2 - 1
    >>> torch.equal(model(x), x[:, 1:])
    True
    """

    def __init__(self, net: nn.Module, prior_channel: int) -> None:
        super().__init__()
        self.net, self.prior_channel = net, prior_channel
        convolutions = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
        last = [m for m in net.modules() if isinstance(m, convolutions)][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prior = x[:, self.prior_channel : self.prior_channel + 1]
        return (prior + self.net(x).to(prior.dtype)).clamp(-1.0, 1.0)


class Pix2PixConfig(FamilyConfig):
    """Settings of the pix2pix family (``model:`` section of a run config).

    Attributes:
        g_channels: U-Net width (first level).
        g_depth: U-Net stride-2 levels; image sides must be divisible by ``2 ** g_depth``.
        g_upsampling: U-Net decoder upsampling, ``"transposed"`` (pix2pix's 4x4 stride-2
            transposed convolutions) or ``"resize"`` (nearest x2 + 3x3 convolution, free of
            checkerboard artefacts).
        dropout: decoder dropout during training (off at inference: it varies little).
        noise_channels: standard-normal noise maps appended to the source, at training and
            at inference, so one source (e.g. a mask) gives several images (0: deterministic).
        noise_cell: side in pixels of the cells of the noise maps: the noise is drawn on a grid
            this much coarser and interpolated, so it varies the image smoothly (illumination,
            tone) rather than as pixel speckle; 1 = one noise value per pixel.
        diversity_weight: weight of the mode-seeking loss (Mao et al. 2019): two noise draws
            per source, the generator is rewarded for making their images differ, so the noise
            is not ignored; needs ``noise_channels`` (0 = off; 1 is the paper's setting).
        d_channels: PatchGAN width.
        d_layers: PatchGAN stride-2 layers (3: 70-pixel patches); sides >= ``3 * 2**d_layers``.
        norm: ``"instance"`` or ``"batch"`` normalisation in G and D.
        loss: adversarial loss, ``"lsgan"`` or ``"bce"``.
        l1_weight: weight of the L1 loss to the target (pix2pix: 100).
        ssim_weight: weight of a structural loss to the target, ``1 - SSIM`` (7-pixel window,
            :func:`medisynth.losses.ssim_loss`): L1 alone favours a blurred mean image, this
            rewards the target's local contrast and edges (0 = off; sides >= 7 pixels).
        perceptual_weight: weight of the MedGAN perceptual loss on D's features (0 = off).
        style_weight: weight of the MedGAN style loss, on the Gram matrices of D's features
            (MedGAN takes them from an ImageNet VGG-19, which would be a download; 0 = off).
        lr_g, lr_d: Adam learning rates.
        betas: Adam betas.
        augment: training augmentations of the pairs: ``"flip"`` (source and target mirrored
            together), ``"gamma"``, ``"blur"`` and ``"noise"`` (random contrast curve, blur or
            noise on the source only), for models that must work on scans other than the
            training ones (see :func:`medisynth.gans.augment.augment_pair`).
    """

    family: Literal["pix2pix"] = "pix2pix"
    g_channels: int = Field(default=64, ge=1)
    g_depth: int = Field(default=5, ge=2, le=8)
    g_upsampling: Upsampling = "transposed"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    noise_channels: int = Field(default=0, ge=0)
    noise_cell: int = Field(default=1, ge=1)
    diversity_weight: float = Field(default=0.0, ge=0)
    d_channels: int = Field(default=64, ge=1)
    d_layers: int = Field(default=3, ge=1, le=5)
    norm: Literal["instance", "batch"] = "instance"
    loss: Literal["lsgan", "bce"] = "lsgan"
    l1_weight: float = Field(default=100.0, ge=0)
    ssim_weight: float = Field(default=0.0, ge=0)
    perceptual_weight: float = Field(default=0.0, ge=0)
    style_weight: float = Field(default=0.0, ge=0)
    lr_g: float = Field(default=2e-4, gt=0)
    lr_d: float = Field(default=2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    augment: list[Literal["flip", "gamma", "blur", "noise"]] = Field(default_factory=list)


class Pix2Pix(ImageToImageFamily):
    """U-Net generator + conditional PatchGAN, adversarial + L1 (+ perceptual) losses."""

    config_class = Pix2PixConfig
    config: Pix2PixConfig
    data_formats = frozenset({"paired"}) | MASK_FORMATS
    tiny_settings = {"g_channels": 4, "g_depth": 2, "d_channels": 4, "d_layers": 2}

    @property
    def input_multiple(self) -> int:
        """Image sides the U-Net takes are multiples of ``2 ** g_depth``."""
        return int(2**self.config.g_depth)

    def setup(self, training: bool) -> None:
        cfg, data = self.config, self.data
        check_divisible(data.spatial_shape, 2**cfg.g_depth, f"a U-Net of depth {cfg.g_depth}")
        if cfg.diversity_weight > 0 and not cfg.noise_channels:
            raise ConfigError("model.diversity_weight needs model.noise_channels > 0 (noise)")
        if cfg.ssim_weight > 0 and min(data.spatial_shape) < SSIM_WINDOW:
            raise ConfigError(
                f"model.ssim_weight needs image sides of at least {SSIM_WINDOW} pixels, "
                f"got {tuple(data.spatial_shape)}"
            )
        if data.source_prior is not None and {"blur", "noise"} & set(cfg.augment):
            raise ConfigError(  # the prior is computed from the unaugmented source
                "model.augment blur and noise change the source but not its prior; "
                "use flip and gamma with data.source_prior"
            )
        generator: nn.Module = UNet(
            self.input_channels + cfg.noise_channels,
            data.channels,
            cfg.g_channels,
            cfg.g_depth,
            data.spatial_dims,
            cfg.norm,
            cfg.dropout,
            cfg.g_upsampling,
        )
        if data.source_prior is not None:
            generator = PriorResidual(generator, prior_channel=self.source_channels)
        self.nets["generator"] = generator.to(self.context.device)
        if not training:
            return
        discriminator = PatchDiscriminator(
            self.input_channels + data.channels,
            cfg.d_channels,
            cfg.d_layers,
            data.spatial_dims,
            cfg.norm,
        )
        discriminator.check_size(data.spatial_shape)
        self.nets["discriminator"] = discriminator.to(self.context.device)
        self.optimizers["generator"] = torch.optim.Adam(
            generator.parameters(), lr=cfg.lr_g, betas=cfg.betas
        )
        self.optimizers["discriminator"] = torch.optim.Adam(
            discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas
        )

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg, ctx = self.config, self.context
        generator, discriminator = self.nets["generator"], self.nets["discriminator"]
        source, target = self._pair(batch)
        if cfg.augment:  # a prior moves with the target and keeps its intensities
            plain, prior = source[:, : self.source_channels], source[:, self.source_channels :]
            plain, both = augment_pair(plain, torch.cat([target, prior], 1), cfg.augment)
            target, prior = both[:, : target.shape[1]], both[:, target.shape[1] :]
            source = torch.cat([plain, prior], 1)
        inputs = self.with_noise(source)
        with ctx.autocast():
            fake = generator(inputs)

        # discriminator: real pairs vs translated pairs
        n = source.shape[0]
        with ctx.autocast():
            pairs = torch.cat(
                [torch.cat([source, target], 1), torch.cat([source, fake.detach().to(target)], 1)]
            )
            scores = discriminator(pairs).float()
            d_loss = discriminator_loss(cfg.loss, scores[:n], scores[n:])
        ctx.backward(d_loss)
        ctx.step(self.optimizers["discriminator"])

        # generator: fool the (frozen) discriminator, stay close to the target
        with frozen(unwrap(discriminator)) as critic:
            with ctx.autocast():
                fake_scores, fake_features = critic(
                    torch.cat([source, fake], 1), return_features=True
                )
                g_adv = generator_loss(cfg.loss, fake_scores)
                l1 = (fake.float() - target.float()).abs().mean()
                total = g_adv + cfg.l1_weight * l1
                structure = perceptual = style = None
                if cfg.ssim_weight > 0:
                    structure = ssim_loss(fake, target)
                    total = total + cfg.ssim_weight * structure
                if cfg.perceptual_weight > 0 or cfg.style_weight > 0:
                    with torch.no_grad():
                        _, real_features = critic(torch.cat([source, target], 1), True)
                if cfg.perceptual_weight > 0:
                    perceptual = feature_matching_loss(fake_features, real_features)
                    total = total + cfg.perceptual_weight * perceptual
                if cfg.style_weight > 0:
                    style = style_loss(fake_features, real_features)
                    total = total + cfg.style_weight * style
                diversity = None
                if cfg.diversity_weight > 0:  # mode seeking: |G(s, z1) - G(s, z2)| / |z1 - z2|
                    k = cfg.noise_channels
                    inputs2 = self.with_noise(source)
                    other = generator(inputs2)
                    diversity = mode_seeking_ratio(other, fake, inputs2[:, -k:], inputs[:, -k:])
                    total = total + cfg.diversity_weight / (diversity + 1e-5)
            ctx.backward(total)
            ctx.step(self.optimizers["generator"])
        losses = {
            "d_loss": float(d_loss.detach()),
            "g_adv": float(g_adv.detach()),
            "l1": float(l1.detach()),
        }
        if isinstance(structure, torch.Tensor):
            losses["ssim"] = float(structure.detach())
        if isinstance(perceptual, torch.Tensor):
            losses["perceptual"] = float(perceptual.detach())
        if isinstance(style, torch.Tensor):
            losses["style"] = float(style.detach())
        if isinstance(diversity, torch.Tensor):
            losses["diversity"] = float(diversity.detach())
        return losses
