"""The DCGAN family: unconditional or class-conditional image synthesis, 2D or 3D.

The defaults are the recipe calibrated on BreastMNIST (546 images) that does not collapse: a
projection discriminator with spectral norm and an auxiliary classifier learning the real
images' classes, a conditional-BatchNorm generator, hinge loss, an EMA generator (the engine
keeps it; BatchNorm statistics are recomputed before sampling), DiffAugment translation +
cutout, D learning rate 2x G's, Adam betas (0, 0.9). BCE, LSGAN and WGAN-GP losses, BatchNorm
discriminators, R1, LeCam, mode seeking and one network pair per class are a setting away.

>>> import torch
>>> from medisynth.gans.base import DataInfo
>>> data = DataInfo(channels=1, spatial_shape=(28, 28), class_names=["a", "b"])
>>> gan = DCGAN.build(DCGANConfig(g_channels=8, d_channels=8, latent_dim=16), data)
>>> batch = {"image": torch.rand(4, 1, 28, 28) * 2 - 1, "label": torch.tensor([0, 1, 0, 1])}
>>> sorted(gan.train_step(batch))
['d_class', 'd_loss', 'd_real', 'g_class', 'g_loss']
>>> gan.sample(3, labels=torch.tensor([1, 1, 0])).shape
torch.Size([3, 1, 28, 28])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from medisynth.errors import ConfigError
from medisynth.gans.base import GANFamily, frozen, unwrap
from medisynth.gans.discriminator_augment import (
    Augmentation,
    AugmentSettings,
    DiscriminatorAugment,
)
from medisynth.losses import (
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    lecam_penalty,
    mode_seeking_ratio,
    r1_penalty,
)
from medisynth.nets.dcgan import DCGANDiscriminator, DCGANGenerator, PerClassNetworks
from medisynth.settings import IMAGE_FORMATS

DEFAULT_AUGMENTATION: tuple[Augmentation, ...] = ("translation", "cutout")
GRID_SEED = 20_151_119  # fixed noise for monitoring grids (the DCGAN paper's arXiv date)
LECAM_DECAY = 0.99  # moving average of D's outputs that anchors the LeCam regulariser


class DCGANConfig(AugmentSettings):
    """Settings of the DCGAN family (``model:`` section of a run config).

    Attributes:
        latent_dim: length of the generator's latent vector.
        g_channels: generator width (its last hidden layer; earlier ones are 2x, 4x, ... 8x).
        upsample: how the generator doubles its resolution: ``"transposed"`` (stride-2
            transposed convolutions, DCGAN) or ``"resize"`` (nearest-neighbour doubling + 3x3
            convolution: no checkerboard speckle).
        d_channels: discriminator width (its first layer).
        conditional: class-conditional G and D when the data has more than one class.
        loss: ``"hinge"``, ``"bce"``, ``"lsgan"`` or ``"wgan-gp"``.
        spectral_norm: spectral-normalise the discriminator.
        d_batch_norm: BatchNorm in the discriminator (DCGAN style; only without spectral norm).
        gp_weight: weight of the WGAN-GP gradient penalty (used with ``loss: wgan-gp``).
        r1_weight: weight of the R1 penalty on real images (0 = off).
        lecam_weight: weight of the LeCam regulariser (0 = off; its paper used 0.3 with hinge
            loss and DiffAugment on 10-20% of CIFAR-10).
        diversity_weight: weight of the mode-seeking loss (Mao et al. 2019; 0 = off): the
            generated batch is drawn in pairs of one class, and G is pushed to make each pair
            differ in proportion to their latent vectors (against a class that decides the
            image and a latent that is ignored). Its paper used 1 for class-conditional DCGAN.
        class_networks: ``"shared"``: one generator and one discriminator for every class
            (conditional BatchNorm, projection); ``"separate"``: an unconditional pair per class,
            each trained on its class's images of the batch only (as one GAN per class,
            Frid-Adar et al. 2018; pair it with ``data.balance_classes`` and a batch of ~64 per
            class). Separate networks have no auxiliary classifier.
        class_loss_weight: weight of an auxiliary classifier on D's features (AC-GAN, Odena et
            al. 2017; 0 = off; shared class networks only): it learns the classes of the *real*
            images only, and G is trained to make images it assigns to their class.
        diffaugment: DiffAugment policy applied to every image D sees (default translation +
            cutout).
        ada, ada_target, ada_p, ada_kimg, ada_interval: adaptive discriminator augmentation
            instead of DiffAugment, 2D only (off by default;
            :class:`~medisynth.gans.discriminator_augment.AugmentSettings`).
        lr_g, lr_d: Adam learning rates.
        betas: Adam betas.
        bn_refresh_batches: batches used to recompute the (EMA) generator's BatchNorm statistics
            before sampling (0 = keep the running statistics).
        grid_per_class: images per class in monitoring grids.
    """

    family: Literal["dcgan"] = "dcgan"
    latent_dim: int = Field(default=128, ge=1)
    g_channels: int = Field(default=64, ge=1)
    upsample: Literal["transposed", "resize"] = "transposed"
    d_channels: int = Field(default=64, ge=1)
    conditional: bool = True
    loss: Literal["hinge", "bce", "lsgan", "wgan-gp"] = "hinge"
    spectral_norm: bool = True
    d_batch_norm: bool = False
    gp_weight: float = Field(default=10.0, ge=0)
    r1_weight: float = Field(default=0.0, ge=0)
    lecam_weight: float = Field(default=0.0, ge=0)
    diversity_weight: float = Field(default=0.0, ge=0)
    class_networks: Literal["shared", "separate"] = "shared"
    class_loss_weight: float = Field(default=1.0, ge=0)
    diffaugment: list[Augmentation] = Field(default_factory=lambda: list(DEFAULT_AUGMENTATION))
    lr_g: float = Field(default=2e-4, gt=0)
    lr_d: float = Field(default=4e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    bn_refresh_batches: int = Field(default=8, ge=0)
    grid_per_class: int = Field(default=8, ge=1)


class DCGAN(GANFamily):
    """DCGAN generator + discriminator trained with one adversarial loss (see the module doc)."""

    config_class = DCGANConfig
    ema_names = ("generator",)
    config: DCGANConfig
    data_formats = IMAGE_FORMATS
    tiny_settings = {"g_channels": 4, "d_channels": 4, "latent_dim": 8}

    def setup(self, training: bool) -> None:
        cfg, data = self.config, self.data
        if len(set(data.spatial_shape)) != 1:
            raise ConfigError(
                f"the DCGAN family needs square images, got {data.spatial_shape}; "
                "set data.image_size to resize"
            )
        if cfg.ada != "off" and data.spatial_dims != 2:
            raise ConfigError(
                f"model.ada: {cfg.ada} works on 2D images; set model.ada: off (DiffAugment "
                "works on volumes too)"
            )
        self.augment = DiscriminatorAugment(cfg)
        self.num_classes = data.num_classes if cfg.conditional and data.num_classes > 1 else 0
        self.lecam_anchors: torch.Tensor | None = None  # moving (real, fake) means of D's output
        size = data.spatial_shape[0]
        separate = bool(self.num_classes) and cfg.class_networks == "separate"
        # the auxiliary classifier needs one discriminator that sees every class
        self.class_loss_weight = 0.0 if separate or not self.num_classes else cfg.class_loss_weight
        copies = self.num_classes if separate else 1
        classes = 0 if separate else self.num_classes  # per-class networks are unconditional

        def one_per_class(build: Callable[[], nn.Module]) -> nn.Module:
            return PerClassNetworks([build() for _ in range(copies)]) if separate else build()

        generator = one_per_class(
            lambda: DCGANGenerator(
                cfg.latent_dim,
                data.channels,
                size,
                cfg.g_channels,
                classes,
                data.spatial_dims,
                cfg.upsample,
            )
        )
        self.nets["generator"] = generator.to(self.context.device)
        if not training:
            return
        discriminator = one_per_class(
            lambda: DCGANDiscriminator(
                data.channels,
                size,
                cfg.d_channels,
                classes,
                spectral_norm=cfg.spectral_norm,
                batch_norm=cfg.d_batch_norm,
                spatial_dims=data.spatial_dims,
                class_head=self.class_loss_weight > 0,
            )
        )
        self.nets["discriminator"] = discriminator.to(self.context.device)
        self.optimizers["generator"] = torch.optim.Adam(
            generator.parameters(), lr=cfg.lr_g, betas=cfg.betas
        )
        self.optimizers["discriminator"] = torch.optim.Adam(
            discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas
        )

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg, ctx = self.config, self.context
        generator, discriminator = self.nets["generator"], self.nets["discriminator"]
        real = ctx.memory_format(batch["image"])
        labels = self.batch_labels(batch)
        n = real.shape[0]
        # mode seeking: image i + half gets image i's class, so the batch holds same-class pairs
        half = (n + 1) // 2 if cfg.diversity_weight > 0 and n > 1 else n
        fake_labels = labels
        if labels is not None and half < n:
            fake_labels = labels[torch.arange(n, device=labels.device) % half]
        z = torch.randn(n, cfg.latent_dim, device=ctx.device)
        with ctx.autocast():
            fake = generator(z, fake_labels)
        aux = None  # (real, generated) labels for the auxiliary classifier
        if self.class_loss_weight > 0 and labels is not None and fake_labels is not None:
            aux = (labels, fake_labels)

        # discriminator: one forward over real and generated images together
        with ctx.autocast():
            images = self.augment(torch.cat([real, fake.detach().to(real.dtype)]))
            real_in, fake_in = images[:n], images[n:]
            if cfg.r1_weight > 0:
                real_in = real_in.detach().requires_grad_(True)
                images = torch.cat([real_in, fake_in])
            both_labels = (
                None if labels is None or fake_labels is None else torch.cat([labels, fake_labels])
            )
            if aux is not None:
                scores, logits = discriminator(images, both_labels, with_logits=True)
                d_class = F.cross_entropy(logits[:n].float(), aux[0])  # real images only
            else:
                scores = discriminator(images, both_labels)
            scores = scores.float()
            real_scores, fake_scores = scores[:n], scores[n:]
            d_loss = discriminator_loss(cfg.loss, real_scores, fake_scores)
        if self.augment.adaptive:
            self.augment.update(real_scores)
        total = d_loss
        if aux is not None:
            total = total + self.class_loss_weight * d_class
        if cfg.loss == "wgan-gp" and cfg.gp_weight > 0:
            with ctx.autocast():
                penalty = gradient_penalty(unwrap(discriminator), real_in, fake_in, labels)
            total = total + cfg.gp_weight * penalty
        if cfg.r1_weight > 0:
            total = total + cfg.r1_weight * r1_penalty(real_scores, real_in)
        if cfg.lecam_weight > 0:
            real_anchor, fake_anchor = self._update_lecam_anchors(real_scores, fake_scores)
            total = total + cfg.lecam_weight * lecam_penalty(
                real_scores, fake_scores, real_anchor, fake_anchor
            )
        ctx.backward(total)
        ctx.step(self.optimizers["discriminator"])

        # generator: through the plain discriminator, whose weights are frozen for this step
        with frozen(unwrap(discriminator)) as critic:
            with ctx.autocast():
                if aux is not None:
                    fake_scores, logits = critic(self.augment(fake), aux[1], with_logits=True)
                    g_class = F.cross_entropy(logits.float(), aux[1])
                    g_loss = generator_loss(cfg.loss, fake_scores)
                    g_loss = g_loss + self.class_loss_weight * g_class
                else:
                    g_loss = generator_loss(cfg.loss, critic(self.augment(fake), fake_labels))
                if half < n:
                    pairs = n - half
                    diversity = mode_seeking_ratio(fake[:pairs], fake[half:], z[:pairs], z[half:])
                    g_loss = g_loss + cfg.diversity_weight / (diversity + 1e-5)
            ctx.backward(g_loss)
            ctx.step(self.optimizers["generator"])
        losses = {
            "d_loss": float(d_loss.detach()),
            "g_loss": float(g_loss.detach()),
            "d_real": float(real_scores.detach().mean()),
        }
        if self.augment.adaptive:
            losses.update(self.augment.stats())
        if half < n:
            losses["diversity"] = float(diversity.detach())
        if aux is not None:
            losses["d_class"] = float(d_class.detach())
            losses["g_class"] = float(g_class.detach())
        return losses

    def _update_lecam_anchors(
        self, real_scores: torch.Tensor, fake_scores: torch.Tensor
    ) -> tuple[float, float]:
        """Move the (real, fake) averages of D's mean output by this step's; return them."""
        means = torch.stack([real_scores.detach().mean(), fake_scores.detach().mean()]).cpu()
        if self.lecam_anchors is None:  # the first step starts the averages at its own means
            self.lecam_anchors = means
        else:
            self.lecam_anchors.mul_(LECAM_DECAY).add_(means, alpha=1 - LECAM_DECAY)
        real, fake = self.lecam_anchors.tolist()
        return real, fake

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.lecam_anchors is not None:
            state["lecam_anchors"] = self.lecam_anchors.clone()
        if self.augment.adaptive:
            state["augment"] = self.augment.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        anchors = state.get("lecam_anchors")
        self.lecam_anchors = None if anchors is None else anchors.clone()
        if "augment" in state:
            self.augment.load_state_dict(state["augment"])

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """``n`` images in [-1, 1] (CPU, float32); ``labels`` default to cycling the classes.

        ``generator`` (a seeded ``torch.Generator`` on the CPU) makes the noise reproducible
        without touching the global random state.
        """
        net = self._inference_generator()
        if self.num_classes:
            labels = self.default_labels(n) if labels is None else labels.long()
            if labels is None or len(labels) != n:
                raise ConfigError(f"need {n} labels, got {None if labels is None else len(labels)}")
            if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
                raise ConfigError(f"labels must be in 0..{self.num_classes - 1}")
        was_training = net.training
        net.eval()
        chunks = []
        try:
            for start in range(0, n, batch_size):
                count = min(batch_size, n - start)
                z = torch.randn(count, self.config.latent_dim, generator=generator)
                part = None if labels is None else labels[start : start + count]
                device = self.context.device
                with self.context.autocast():
                    out = net(z.to(device), None if part is None else part.to(device))
                chunks.append(out.float().cpu())
        finally:
            net.train(was_training)
        return torch.cat(chunks) if chunks else torch.empty(0)

    def sample_grid(self) -> tuple[torch.Tensor, int]:
        per_class = self.config.grid_per_class
        rows = max(self.num_classes, 1) if self.num_classes else per_class
        labels = (
            torch.arange(self.num_classes).repeat_interleave(per_class)
            if self.num_classes
            else None
        )
        grid_noise = torch.Generator().manual_seed(GRID_SEED)
        return self.sample(rows * per_class, labels, generator=grid_noise), per_class

    @torch.no_grad()
    def prepare_for_sampling(self) -> None:
        """Recompute the averaged generator's BatchNorm statistics from its own samples."""
        if "generator" not in self.ema_nets or self.config.bn_refresh_batches == 0:
            return
        net = self.ema_nets["generator"]
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        noise = torch.Generator().manual_seed(GRID_SEED + 1)
        counts = self.data.class_counts
        class_weights = torch.tensor(
            [float(counts.get(k, 1)) for k in range(max(self.num_classes, 1))]
        )
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the refresh batches
        net.train()
        batch = 64
        try:
            for _ in range(self.config.bn_refresh_batches):
                z = torch.randn(batch, self.config.latent_dim, generator=noise)
                labels = (
                    torch.multinomial(class_weights, batch, replacement=True, generator=noise)
                    if self.num_classes
                    else None
                )
                with self.context.autocast():
                    net(
                        z.to(self.context.device),
                        None if labels is None else labels.to(self.context.device),
                    )
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
            net.eval()
