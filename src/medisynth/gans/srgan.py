"""The SRGAN family: x2 / x4 super-resolution of 2D images or 3D volumes.

A residual generator (:class:`~medisynth.nets.srresnet.SRResNet`: residual blocks, then
nearest x2 + convolution stages, predicting a residual over bicubic/trilinear interpolation, so
it starts at the interpolation baseline) and a PatchGAN discriminator on high-resolution images,
trained with ``l1_weight`` x L1 to the high-resolution image (the content loss) plus
``adv_weight`` x an adversarial loss (LSGAN, BCE or hinge; Ledig et al. 2017). ``perceptual_weight
> 0`` adds a feature loss on the discriminator's activations (as MedGAN's perceptual option of
pix2pix); ``warmup_steps`` trains the generator on the content loss alone first (SRGAN starts from
a pre-trained SRResNet).

Training needs only high-resolution images: any data format that gives ``{"image"}`` batches
(``medmnist``, ``folder``, ``slices``; or the ``target`` of ``paired`` data). Each step makes the
low-resolution input by *area* downsampling: the mean of every ``scale``-wide block of pixels
(average pooling, in the [-1, 1] domain; the intensity map is affine, so this is the same as
averaging in source units). Image sides must be divisible by ``scale``. The model's
``DataInfo`` describes the high-resolution images; :mod:`medisynth.apply.enhance` applies a trained
model to files.

>>> import torch
>>> from medisynth.gans.base import DataInfo
>>> gan = SRGAN.build(SRGANConfig(scale=2, g_channels=4, n_blocks=1, d_channels=4, d_layers=2),
...                   DataInfo(channels=1, spatial_shape=(16, 16)))
>>> sorted(gan.train_step({"image": torch.rand(2, 1, 16, 16) * 2 - 1}))
['d_loss', 'g_adv', 'l1', 'l1_interpolation']
>>> gan.translate(torch.zeros(3, 1, 5, 7)).shape  # any input size: (N, C, 2 * H, 2 * W)
torch.Size([3, 1, 10, 14])
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from medisynth.errors import ConfigError
from medisynth.gans.base import frozen, unwrap
from medisynth.gans.pix2pix import GRID_IMAGES, ImageToImageFamily
from medisynth.losses import discriminator_loss, feature_matching_loss, generator_loss
from medisynth.nets.patchgan import PatchDiscriminator
from medisynth.nets.srresnet import SRResNet, downsample, upsample
from medisynth.settings import IMAGE_FORMATS, FamilyConfig


class SRGANConfig(FamilyConfig):
    """Settings of the srgan family (``model:`` section of a run config).

    Attributes:
        scale: upsampling factor, 2 or 4 (per spatial axis).
        g_channels: generator width.
        n_blocks: generator residual blocks (SRGAN: 16).
        d_channels: PatchGAN width.
        d_layers: PatchGAN stride-2 layers; high-resolution sides >= ``3 * 2**d_layers``.
        norm: ``"instance"`` or ``"batch"`` normalisation in the discriminator.
        loss: adversarial loss, ``"lsgan"``, ``"bce"`` or ``"hinge"``.
        l1_weight: weight of the L1 content loss to the high-resolution image.
        adv_weight: weight of the adversarial loss (0: a plain L1-trained SRResNet).
        perceptual_weight: weight of the feature loss on D's activations (0 = off).
        warmup_steps: first steps train the generator on the content loss only.
        patch_size: train on random ``patch_size``-wide crops of the high-resolution images
            (one per image and step; must be divisible by ``scale``); the generator is fully
            convolutional, so it still enhances images of any size. ``None``: whole images.
        lr_g, lr_d: Adam learning rates.
        betas: Adam betas.
    """

    family: Literal["srgan"] = "srgan"
    scale: Literal[2, 4] = 2
    g_channels: int = Field(default=64, ge=1)
    n_blocks: int = Field(default=16, ge=0, le=64)
    d_channels: int = Field(default=64, ge=1)
    d_layers: int = Field(default=3, ge=1, le=5)
    norm: Literal["instance", "batch"] = "instance"
    loss: Literal["lsgan", "bce", "hinge"] = "lsgan"
    l1_weight: float = Field(default=100.0, ge=0)
    adv_weight: float = Field(default=1.0, ge=0)
    perceptual_weight: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=0, ge=0)
    patch_size: int | None = Field(default=None, ge=8)
    lr_g: float = Field(default=1e-4, gt=0)
    lr_d: float = Field(default=1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)


class SRGAN(ImageToImageFamily):
    """Residual SR generator + PatchGAN, L1 content + adversarial (+ feature) losses.

    :meth:`translate` maps low-resolution images in [-1, 1] of any size to ``scale`` times
    their size; :meth:`sample` super-resolves the monitoring images kept from the first batch.
    """

    config_class = SRGANConfig
    config: SRGANConfig
    task = "super_resolve"
    #: high-resolution images: ``{"image"}`` batches, or the targets of paired data
    data_formats = IMAGE_FORMATS | {"paired"}
    tiny_settings = {"g_channels": 4, "n_blocks": 1, "d_channels": 4, "d_layers": 2}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps_done = 0

    @property
    def scale(self) -> int:
        return int(self.config.scale)

    def setup(self, training: bool) -> None:
        cfg, data = self.config, self.data
        bad = [s for s in data.spatial_shape if s % cfg.scale]
        if cfg.patch_size is not None:
            if cfg.patch_size % cfg.scale or cfg.patch_size > min(data.spatial_shape):
                raise ConfigError(
                    f"model.patch_size {cfg.patch_size} must be divisible by the scale "
                    f"{cfg.scale} and fit in the images {tuple(data.spatial_shape)}"
                )
            bad = []
        if bad:
            raise ConfigError(
                f"super-resolution x{cfg.scale} needs image sides divisible by {cfg.scale} (the "
                f"low-resolution input is their {cfg.scale}-block mean), got "
                f"{tuple(data.spatial_shape)}; set data.image_size"
            )
        generator = SRResNet(
            self.source_channels, cfg.g_channels, cfg.n_blocks, cfg.scale, data.spatial_dims,
            data.channels,
        )  # fmt: skip
        self.nets["generator"] = generator.to(self.context.device)
        if not training:
            return
        discriminator = PatchDiscriminator(
            data.channels, cfg.d_channels, cfg.d_layers, data.spatial_dims, cfg.norm
        )
        trained_shape = (
            (cfg.patch_size,) * data.spatial_dims if cfg.patch_size else data.spatial_shape
        )
        discriminator.check_size(trained_shape)
        self.nets["discriminator"] = discriminator.to(self.context.device)
        self.optimizers["generator"] = torch.optim.Adam(
            generator.parameters(), lr=cfg.lr_g, betas=cfg.betas
        )
        self.optimizers["discriminator"] = torch.optim.Adam(
            discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas
        )

    def low_resolution(self, images: torch.Tensor) -> torch.Tensor:
        """The model's input for high-resolution ``images``: their ``scale``-block means."""
        return downsample(images.float(), self.scale)

    def _high_resolution(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        key = "image" if "image" in batch else "target"
        if key not in batch:
            raise ConfigError(
                f"the srgan family needs batches with 'image' (high-resolution images), got "
                f"keys {sorted(batch)}"
            )
        hr = self._crop(batch[key])
        if not self.grid_pairs:
            kept = hr[:GRID_IMAGES].detach().float().cpu()
            self.grid_pairs = {"source": self.low_resolution(kept), "target": kept}
        return self.context.memory_format(hr)

    def _crop(self, images: torch.Tensor) -> torch.Tensor:
        """Random ``patch_size`` crops (one per image, offsets from the global torch RNG), or
        the images themselves."""
        size = self.config.patch_size
        if size is None:
            return images
        spatial = images.shape[2:]
        crops = []
        for image in images:
            starts = [int(torch.randint(0, s - size + 1, (1,))) for s in spatial]
            crops.append(image[(slice(None), *(slice(a, a + size) for a in starts))])
        return torch.stack(crops)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg, ctx = self.config, self.context
        generator = self.nets["generator"]
        hr = self._high_resolution(batch)
        lr = self.low_resolution(hr)
        with ctx.autocast():
            sr = generator(lr)
        l1_interp = float((upsample(lr, self.scale) - hr.float()).abs().mean())
        self.steps_done += 1
        if (
            self.steps_done <= cfg.warmup_steps
            or cfg.adv_weight == 0
            and cfg.perceptual_weight == 0
        ):
            l1 = (sr.float() - hr.float()).abs().mean()
            ctx.backward(cfg.l1_weight * l1 if cfg.l1_weight > 0 else l1)
            ctx.step(self.optimizers["generator"])
            return {"l1": float(l1.detach()), "l1_interpolation": l1_interp}

        discriminator = self.nets["discriminator"]
        n = hr.shape[0]
        with ctx.autocast():
            scores = discriminator(torch.cat([hr, sr.detach().to(hr)])).float()
            d_loss = discriminator_loss(cfg.loss, scores[:n], scores[n:])
        ctx.backward(d_loss)
        ctx.step(self.optimizers["discriminator"])

        with frozen(unwrap(discriminator)) as critic:
            with ctx.autocast():
                fake_scores, fake_features = critic(sr, return_features=True)
                g_adv = generator_loss(cfg.loss, fake_scores)
                l1 = (sr.float() - hr.float()).abs().mean()
                total = cfg.adv_weight * g_adv + cfg.l1_weight * l1
                perceptual = None
                if cfg.perceptual_weight > 0:
                    with torch.no_grad():
                        _, real_features = critic(hr, True)
                    perceptual = feature_matching_loss(fake_features, real_features)
                    total = total + cfg.perceptual_weight * perceptual
            ctx.backward(total)
            ctx.step(self.optimizers["generator"])
        losses = {
            "d_loss": float(d_loss.detach()),
            "g_adv": float(g_adv.detach()),
            "l1": float(l1.detach()),
            "l1_interpolation": l1_interp,
        }
        if isinstance(perceptual, torch.Tensor):
            losses["perceptual"] = float(perceptual.detach())
        return losses

    def sample_grid(self) -> tuple[torch.Tensor, int]:
        """Rows: interpolated low-resolution inputs, super-resolved, high-resolution originals."""
        if not self.grid_pairs:
            return torch.zeros((1, self.data.channels, *self.data.spatial_shape)), 1
        source, target = self.grid_pairs["source"], self.grid_pairs["target"]
        rows = [upsample(source, self.scale).clamp(-1, 1), self.translate(source), target]
        return torch.cat(rows), len(source)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps_done = int(state.get("steps_done", 0))
