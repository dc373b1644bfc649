"""The style family: a style-based GAN (StyleGAN2-ADA; optionally R3GAN's loss) for 2D images.

Networks from :mod:`medisynth.nets.style`: a mapping network (class-conditional when the data
have classes) and a modulated-convolution synthesis network; a residual discriminator with
minibatch standard deviation and projection conditioning. Training:

- **loss**: ``"logistic"`` (StyleGAN2's non-saturating loss with R1 on real images) or
  ``"relativistic"`` (R3GAN: the relativistic pairing loss RpGAN with R1 on real *and* R2 on
  generated images), from :mod:`medisynth.gans.style_losses`;
- **lazy regularisation**: the penalties are computed every ``r1_interval`` steps only, scaled
  by the interval. They are computed in float32, outside autocast: a gradient penalty is a
  gradient of a gradient, and bf16/fp16 rounding makes it noisy or overflow;
- **style mixing**: with probability ``mix_prob`` a batch's styles switch to a second latent's
  from a random layer on (generator step and the images D sees);
- **ADA** (:mod:`medisynth.gans.ada`): every image D sees, real or generated, goes through the
  augmentation pipeline with probability ``p``, steered by ``r_t = E[sign(D(real))]`` towards
  ``ada_target`` (``ada: adaptive``), kept at ``ada_p`` (``fixed``), or no pipeline (``off``,
  where a DiffAugment policy may be set instead). ``ada_p`` and ``r_t`` are logged every step;
- the engine keeps the EMA generator (``train.ema_decay``).

Sampling uses the fixed noise maps (``noise_mode="const"``), so an image depends on its latent
and class only; :meth:`StyleGAN.sample` takes ``truncation_psi`` (the truncation trick, around
each class's mean style): the family declares ``truncation = True`` for ``medisynth generate
--truncation``. Sizes that are not a power of two are synthesised at the next one and cropped
(28 -> 32 -> 28).

>>> import torch
>>> from medisynth.gans.base import DataInfo
>>> data = DataInfo(channels=1, spatial_shape=(16, 16), class_names=["a", "b"])
>>> cfg = StyleConfig(latent_dim=8, w_dim=8, channel_base=64, channel_max=8)
>>> gan = StyleGAN.build(cfg, data)
>>> batch = {"image": torch.rand(4, 1, 16, 16) * 2 - 1, "label": torch.tensor([0, 1, 0, 1])}
>>> sorted(gan.train_step(batch))
['ada_p', 'd_loss', 'd_real', 'g_loss', 'r_t', 'reg']
>>> gan.sample(3, labels=torch.tensor([1, 1, 0]), truncation_psi=0.7).shape
torch.Size([3, 1, 16, 16])
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from medisynth.errors import ConfigError
from medisynth.gans.ada import AugmentMode
from medisynth.gans.base import GANFamily, frozen, unwrap
from medisynth.gans.discriminator_augment import AugmentSettings, DiscriminatorAugment
from medisynth.gans.style_losses import (
    logistic_d_loss,
    logistic_g_loss,
    r1_penalty,
    r2_penalty,
    rpgan_d_loss,
    rpgan_g_loss,
)
from medisynth.nets.style import StyleDiscriminator, StyleGenerator, synthesis_resolution
from medisynth.settings import IMAGE_FORMATS

GRID_SEED = 20_191_212  # fixed noise for monitoring grids (StyleGAN2's arXiv date)
R1_GAMMA_RULE = 0.0002  # StyleGAN2-ADA's automatic gamma: 0.0002 * resolution^2 / batch


class StyleConfig(AugmentSettings):
    """Settings of the style family (``model:`` section of a run config).

    Attributes:
        conditional: class-conditional G (mapping network) and D (projection) when the data
            have more than one class.
        latent_dim: length of the latent ``z``.
        w_dim: length of the style ``w``.
        mapping_layers: layers of the mapping network (2 suits small data sets).
        channel_base, channel_max: network widths; channels at resolution ``r`` are
            ``channel_base // r``, at most ``channel_max``. The defaults (1024, 128: 32 channels
            at 32 px, 64 at 16 px, 128 below) are CPU-sized: about 0.4 s per step at batch 64,
            32 px, one thread, bf16.
        loss: ``"logistic"`` (StyleGAN2, R1) or ``"relativistic"`` (R3GAN's RpGAN, R1 + R2).
        r1_gamma: weight ``gamma`` of the R1 (and R2) penalty ``gamma / 2 * ||grad D||^2``;
            ``null`` (default): StyleGAN2-ADA's rule ``0.0002 * res^2 / batch`` with ``res``
            the networks' resolution (32 for 28-pixel images) and ``batch`` the batch size.
        r1_interval: steps between (lazy) penalty computations; 1 = every step.
        mix_prob: probability of style mixing per training batch.
        ada, ada_target, ada_p, ada_kimg, ada_interval, diffaugment: discriminator
            augmentation (:class:`~medisynth.gans.discriminator_augment.AugmentSettings`);
            here ADA is adaptive by default.
        lr_g, lr_d: Adam learning rates (StyleGAN2-ADA: 0.0025 both).
        betas: Adam betas.
        grid_per_class: images per class in monitoring grids.
    """

    family: Literal["style"] = "style"
    conditional: bool = True
    latent_dim: int = Field(default=128, ge=1)
    w_dim: int = Field(default=128, ge=1)
    mapping_layers: int = Field(default=2, ge=1)
    channel_base: int = Field(default=1024, ge=1)
    channel_max: int = Field(default=128, ge=1)
    loss: Literal["logistic", "relativistic"] = "logistic"
    r1_gamma: float | None = Field(default=None, ge=0)
    r1_interval: int = Field(default=16, ge=1)
    mix_prob: float = Field(default=0.9, ge=0, le=1)
    ada: AugmentMode = "adaptive"
    lr_g: float = Field(default=0.0025, gt=0)
    lr_d: float = Field(default=0.0025, gt=0)
    betas: tuple[float, float] = (0.0, 0.99)
    grid_per_class: int = Field(default=8, ge=1)


class StyleGAN(GANFamily):
    """Style-based generator + residual discriminator with ADA (see the module docstring)."""

    config_class = StyleConfig
    ema_names = ("generator",)
    config: StyleConfig
    data_formats = IMAGE_FORMATS
    truncation = True
    tiny_settings = {"latent_dim": 8, "w_dim": 8, "channel_base": 64, "channel_max": 8}

    def setup(self, training: bool) -> None:
        cfg, data = self.config, self.data
        if data.spatial_dims != 2 or len(set(data.spatial_shape)) != 1:
            raise ConfigError(
                f"the style family needs square 2D images, got {data.spatial_shape}; "
                "set data.image_size to resize (or choose another family for volumes)"
            )
        size = data.spatial_shape[0]
        self.resolution = synthesis_resolution(size)  # ConfigError for unsupported sizes
        self.num_classes = data.num_classes if cfg.conditional and data.num_classes > 1 else 0
        self.steps_done = 0  # for the lazy regularisation schedule
        self.last_reg = 0.0  # the last penalty computed (logged every step)
        self.augment = DiscriminatorAugment(cfg)
        generator = StyleGenerator(
            z_dim=cfg.latent_dim,
            w_dim=cfg.w_dim,
            num_classes=self.num_classes,
            resolution=size,
            img_channels=data.channels,
            mapping_layers=cfg.mapping_layers,
            channel_base=cfg.channel_base,
            channel_max=cfg.channel_max,
        )
        self.nets["generator"] = generator.to(self.context.device)
        if not training:
            return
        discriminator = StyleDiscriminator(
            resolution=size,
            img_channels=data.channels,
            num_classes=self.num_classes,
            channel_base=cfg.channel_base,
            channel_max=cfg.channel_max,
        )
        self.nets["discriminator"] = discriminator.to(self.context.device)
        self.optimizers["generator"] = torch.optim.Adam(
            generator.parameters(), lr=cfg.lr_g, betas=cfg.betas
        )
        self.optimizers["discriminator"] = torch.optim.Adam(
            discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas
        )

    # ------------------------------------------------------------------ training
    def r1_gamma(self, batch_size: int) -> float:
        """The R1 (and R2) weight: ``r1_gamma``, or StyleGAN2-ADA's rule for this batch size."""
        if self.config.r1_gamma is not None:
            return self.config.r1_gamma
        return R1_GAMMA_RULE * self.resolution**2 / batch_size

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg, ctx = self.config, self.context
        generator, discriminator = self.nets["generator"], self.nets["discriminator"]
        real = ctx.memory_format(batch["image"])
        labels = self.batch_labels(batch)
        n = real.shape[0]
        relativistic = cfg.loss == "relativistic"
        z = torch.randn(n, cfg.latent_dim, device=ctx.device)
        with ctx.autocast():
            fake = generator(z, labels, mix_prob=cfg.mix_prob)

        # discriminator: real and generated images in separate passes (the minibatch standard
        # deviation must not mix them), both through the augmentation
        with ctx.autocast():
            real_logits = discriminator(self.augment(real), labels).float()
            fake_logits = discriminator(self.augment(fake.detach().to(real.dtype)), labels)
            fake_logits = fake_logits.float()
            if relativistic:
                d_loss = rpgan_d_loss(real_logits, fake_logits)
            else:
                d_loss = logistic_d_loss(real_logits, fake_logits)
        ctx.backward(d_loss)
        self.augment.update(real_logits)
        if self.steps_done % cfg.r1_interval == 0:
            reg = self._penalties(discriminator, real, fake.detach(), labels)
            ctx.backward(reg)
            self.last_reg = float(reg.detach())
        ctx.step(self.optimizers["discriminator"])

        # generator: through the plain discriminator, whose weights are frozen for this step
        with frozen(unwrap(discriminator)) as critic:
            with ctx.autocast():
                fake_logits = critic(self.augment(fake), labels).float()
                if relativistic:
                    with torch.no_grad():
                        anchor = critic(self.augment(real), labels).float()
                    g_loss = rpgan_g_loss(anchor, fake_logits)
                else:
                    g_loss = logistic_g_loss(fake_logits)
            ctx.backward(g_loss)
            ctx.step(self.optimizers["generator"])
        self.steps_done += 1
        return {
            "d_loss": float(d_loss.detach()),
            "g_loss": float(g_loss.detach()),
            "d_real": float(real_logits.detach().mean()),
            "reg": self.last_reg,
            **self.augment.stats(),
        }

    def _penalties(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """Lazy R1 (and R2 for the relativistic loss), in float32 outside autocast: the
        gradient of a gradient is too noisy in bf16 and overflows in fp16."""
        cfg = self.config
        gamma = self.r1_gamma(real.shape[0])
        real_in = self.augment(real.float()).detach().requires_grad_(True)
        real_logits = discriminator(real_in, labels)
        total = r1_penalty(real_logits, real_in, gamma, cfg.r1_interval)
        # + 0 * logits: every parameter of D takes part in the backward pass (the output bias
        # does not affect the gradient), as DistributedDataParallel requires
        total = total + 0.0 * real_logits.float().sum()
        if cfg.loss == "relativistic":
            fake_in = self.augment(fake.float()).detach().requires_grad_(True)
            fake_logits = discriminator(fake_in, labels)
            total = total + r2_penalty(fake_logits, fake_in, gamma, cfg.r1_interval)
            total = total + 0.0 * fake_logits.float().sum()
        return total

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["augment"] = self.augment.state_dict()
        state["steps_done"] = self.steps_done
        state["last_reg"] = self.last_reg
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "augment" in state:
            self.augment.load_state_dict(state["augment"])
        self.steps_done = int(state.get("steps_done", 0))
        self.last_reg = float(state.get("last_reg", 0.0))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        truncation_psi: float = 1.0,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """``n`` images in [-1, 1] (CPU, float32); ``labels`` default to cycling the classes.

        ``truncation_psi < 1`` pulls every style towards its class's mean style (0: every image
        of a class is the class's mean image). The fixed noise maps are used, so an image
        depends on its latent (from ``generator``) and class only.
        """
        check_truncation(truncation_psi)
        net = self._inference_generator()
        if self.num_classes:
            labels = self.default_labels(n) if labels is None else labels.long()
            if labels is None or len(labels) != n:
                raise ConfigError(f"need {n} labels, got {None if labels is None else len(labels)}")
            if n and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ConfigError(f"labels must be in 0..{self.num_classes - 1}")
        else:
            labels = None
        was_training = net.training
        net.eval()
        chunks = []
        device = self.context.device
        try:
            for start in range(0, n, batch_size):
                count = min(batch_size, n - start)
                z = torch.randn(count, self.config.latent_dim, generator=generator)
                part = None if labels is None else labels[start : start + count].to(device)
                with self.context.autocast():
                    out = net(z.to(device), part, truncation_psi, noise_mode="const")
                chunks.append(out.float().clamp(-1.0, 1.0).cpu())
        finally:
            net.train(was_training)
        if not chunks:
            return torch.empty(0, self.data.channels, *self.data.spatial_shape)
        return torch.cat(chunks)

    def sample_truncated(
        self,
        n: int,
        labels: torch.Tensor | None,
        generator: torch.Generator | None,
        psi: float,
    ) -> torch.Tensor:
        return self.sample(n, labels, generator, truncation_psi=psi)

    def sample_grid(self) -> tuple[torch.Tensor, int]:
        per_class = self.config.grid_per_class
        rows = self.num_classes if self.num_classes else per_class
        labels = (
            torch.arange(self.num_classes).repeat_interleave(per_class)
            if self.num_classes
            else None
        )
        grid_noise = torch.Generator().manual_seed(GRID_SEED)
        return self.sample(rows * per_class, labels, generator=grid_noise), per_class


def check_truncation(psi: float) -> None:
    """ConfigError unless ``0 <= psi <= 1`` (1: no truncation)."""
    if not 0.0 <= psi <= 1.0:
        raise ConfigError(
            f"truncation psi must be within [0, 1] (1 = no truncation, 0 = the class's mean "
            f"image), got {psi}"
        )
