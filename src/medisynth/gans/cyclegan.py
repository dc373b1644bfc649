"""The CycleGAN family: unpaired image-to-image translation (source domain A -> target B), 2D/3D.

Two ResNet generators (``generator``: A -> B, ``generator_ba``: B -> A) and two PatchGAN
discriminators (``discriminator``: on B, ``discriminator_a``: on A), trained with LSGAN, the cycle
loss ``|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|`` (weight ``cycle_weight``), the identity loss
(weight ``identity_weight`` x ``cycle_weight``, when both domains have the same channels) and a
pool of earlier translations for the discriminators (Zhu et al. 2017).

Batches are ``{"source", "target"}`` in [-1, 1]; they need not be paired (``data.format:
unpaired``). The package keeps both generators; :mod:`medisynth.apply.translate` uses A -> B.

>>> import torch
>>> from medisynth.gans.base import DataInfo
>>> data = DataInfo(channels=1, spatial_shape=(16, 16))
>>> cfg = CycleGANConfig(g_channels=4, n_blocks=1, d_channels=4, d_layers=2, pool_size=4)
>>> gan = CycleGAN.build(cfg, data)
>>> batch = {"source": torch.rand(2, 1, 16, 16) * 2 - 1, "target": torch.rand(2, 1, 16, 16)}
>>> sorted(gan.train_step(batch))
['cycle', 'd_a', 'd_b', 'g_adv', 'identity']
>>> gan.translate(batch["source"]).shape
torch.Size([2, 1, 16, 16])
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import torch
from pydantic import Field

from medisynth.errors import ConfigError
from medisynth.gans.base import frozen, unwrap
from medisynth.gans.pix2pix import ImageToImageFamily
from medisynth.losses import discriminator_loss, generator_loss
from medisynth.nets.patchgan import PatchDiscriminator
from medisynth.nets.resnet_generator import ResnetGenerator
from medisynth.nets.unet import check_divisible
from medisynth.settings import PAIR_FORMATS, FamilyConfig


class ImagePool:
    """A buffer of earlier generated images (Shrivastava et al. 2017): each query returns, per
    image, either the new image or (with probability 1/2, once the pool is full) a stored one that
    the new image replaces.

    >>> pool = ImagePool(2)
    >>> pool.query(torch.zeros(3, 1, 2, 2)).shape
    torch.Size([3, 1, 2, 2])
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                index = int(torch.randint(self.size, ()))
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> list[torch.Tensor]:
        return [image.cpu() for image in self.images]

    def load_state_dict(self, images: list[torch.Tensor], device: torch.device) -> None:
        self.images = [image.to(device) for image in images]


class CycleGANConfig(FamilyConfig):
    """Settings of the CycleGAN family (``model:`` section of a run config).

    Attributes:
        g_channels: ResNet generator width (stem).
        n_blocks: residual blocks (6 for 128 px, 9 for 256 px).
        n_down: generator downsamplings; sides must be divisible by ``2 ** n_down``.
        d_channels: PatchGAN width.
        d_layers: PatchGAN stride-2 layers; sides >= ``3 * 2**d_layers``.
        norm: ``"instance"`` or ``"batch"``.
        cycle_weight: weight of the cycle-consistency L1 loss (10).
        identity_weight: identity loss weight, relative to ``cycle_weight`` (0.5; 0 = off).
        pool_size: images kept in each discriminator's pool (50; 0 = no pool).
        lr_g, lr_d: Adam learning rates.
        betas: Adam betas.
    """

    family: Literal["cyclegan"] = "cyclegan"
    g_channels: int = Field(default=64, ge=1)
    n_blocks: int = Field(default=6, ge=0)
    n_down: int = Field(default=2, ge=0, le=4)
    d_channels: int = Field(default=64, ge=1)
    d_layers: int = Field(default=3, ge=1, le=5)
    norm: Literal["instance", "batch"] = "instance"
    cycle_weight: float = Field(default=10.0, ge=0)
    identity_weight: float = Field(default=0.5, ge=0)
    pool_size: int = Field(default=50, ge=0)
    lr_g: float = Field(default=2e-4, gt=0)
    lr_d: float = Field(default=2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)


class CycleGAN(ImageToImageFamily):
    """Two ResNet generators, two PatchGANs; LSGAN + cycle + identity losses."""

    config_class = CycleGANConfig
    ema_names = ("generator",)
    # bf16 autocast on CPU made its gradients NaN at the second step on brain MRI slices
    # (reflection-padded residual blocks; zero padding or fp32 trains): ``auto`` means fp32 here
    cpu_autocast = False
    config: CycleGANConfig
    data_formats = PAIR_FORMATS
    tiny_settings = {"g_channels": 4, "n_blocks": 1, "d_channels": 4, "d_layers": 2}

    def setup(self, training: bool) -> None:
        cfg, data = self.config, self.data
        if data.source_prior is not None:
            raise ConfigError("data.source_prior is for paired models (pix2pix), not cyclegan")
        check_divisible(data.spatial_shape, 2**cfg.n_down, "the ResNet generator")
        dims, a_ch, b_ch = data.spatial_dims, self.source_channels, data.channels

        def make_generator(cin: int, cout: int) -> ResnetGenerator:
            return ResnetGenerator(
                cin, cout, cfg.g_channels, cfg.n_blocks, cfg.n_down, dims, cfg.norm
            )

        self.nets["generator"] = make_generator(a_ch, b_ch).to(self.context.device)
        self.nets["generator_ba"] = make_generator(b_ch, a_ch).to(self.context.device)
        if not training:
            return
        for name, channels in (("discriminator", b_ch), ("discriminator_a", a_ch)):
            net = PatchDiscriminator(channels, cfg.d_channels, cfg.d_layers, dims, cfg.norm)
            net.check_size(data.spatial_shape)
            self.nets[name] = net.to(self.context.device)
        self.optimizers["generators"] = torch.optim.Adam(
            itertools.chain(
                self.nets["generator"].parameters(), self.nets["generator_ba"].parameters()
            ),
            lr=cfg.lr_g,
            betas=cfg.betas,
        )
        self.optimizers["discriminators"] = torch.optim.Adam(
            itertools.chain(
                self.nets["discriminator"].parameters(),
                self.nets["discriminator_a"].parameters(),
            ),
            lr=cfg.lr_d,
            betas=cfg.betas,
        )
        self.pools = {"a": ImagePool(cfg.pool_size), "b": ImagePool(cfg.pool_size)}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg, ctx = self.config, self.context
        g_ab, g_ba = self.nets["generator"], self.nets["generator_ba"]
        d_b, d_a = self.nets["discriminator"], self.nets["discriminator_a"]
        real_a, real_b = self._pair(batch)
        critics = [unwrap(d_b), unwrap(d_a)]

        # generators: fool both (frozen) discriminators, cycle back, keep identities
        with frozen(*critics):
            with ctx.autocast():
                fake_b, fake_a = g_ab(real_a), g_ba(real_b)
                rec_a, rec_b = g_ba(fake_b), g_ab(fake_a)
                g_adv = generator_loss("lsgan", critics[0](fake_b)) + generator_loss(
                    "lsgan", critics[1](fake_a)
                )
                cycle = (rec_a.float() - real_a.float()).abs().mean() + (
                    rec_b.float() - real_b.float()
                ).abs().mean()
                total = g_adv + cfg.cycle_weight * cycle
                identity = torch.zeros(())
                if cfg.identity_weight > 0 and real_a.shape[1] == real_b.shape[1]:
                    identity = (g_ab(real_b).float() - real_b.float()).abs().mean() + (
                        g_ba(real_a).float() - real_a.float()
                    ).abs().mean()
                    total = total + cfg.identity_weight * cfg.cycle_weight * identity
            ctx.backward(total)
            ctx.step(self.optimizers["generators"])

        # discriminators: real vs pooled earlier translations
        with ctx.autocast():
            pooled_b = self.pools["b"].query(fake_b.detach().to(real_b.dtype))
            pooled_a = self.pools["a"].query(fake_a.detach().to(real_a.dtype))
            d_b_loss = discriminator_loss("lsgan", d_b(real_b), d_b(pooled_b))
            d_a_loss = discriminator_loss("lsgan", d_a(real_a), d_a(pooled_a))
        ctx.backward(d_b_loss + d_a_loss)
        ctx.step(self.optimizers["discriminators"])
        return {
            "d_a": float(d_a_loss.detach()),
            "d_b": float(d_b_loss.detach()),
            "g_adv": float(g_adv.detach()),
            "cycle": float(cycle.detach()),
            "identity": float(identity.detach()),
        }

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["pools"] = {k: pool.state_dict() for k, pool in getattr(self, "pools", {}).items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for key, pool in getattr(self, "pools", {}).items():
            pool.load_state_dict(state.get("pools", {}).get(key, []), self.context.device)
