"""Discriminator augmentation shared by the 2D families: ADA or DiffAugment, in dcgan too."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from medisynth.config import RunConfig
from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo
from medisynth.gans.dcgan import DCGAN, DCGANConfig
from medisynth.gans.discriminator_augment import AugmentSettings, DiscriminatorAugment


def tiny_dcgan(spatial_dims: int = 2, **settings: Any) -> DCGAN:
    torch.manual_seed(0)
    data = DataInfo(channels=1, spatial_shape=(16,) * spatial_dims, class_names=["a", "b"])
    family = DCGAN.build(DCGANConfig(latent_dim=8, g_channels=4, d_channels=4, **settings), data)
    assert isinstance(family, DCGAN)
    return family


def batch(n: int = 4) -> dict[str, torch.Tensor]:
    return {"image": torch.rand(n, 1, 16, 16) * 2 - 1, "label": torch.arange(n) % 2}


def test_ada_replaces_the_family_default_policy_but_not_an_explicit_one() -> None:
    assert DCGANConfig().diffaugment == ["translation", "cutout"] and DCGANConfig().ada == "off"
    assert DCGANConfig(ada="adaptive").diffaugment == []
    with pytest.raises(ConfigError, match="ada: off"):
        RunConfig.from_dict({"model": {"ada": "fixed", "diffaugment": ["cutout"]}})
    assert AugmentSettings().ada == "off" and not DiscriminatorAugment(AugmentSettings()).adaptive


def test_dcgan_sends_every_discriminator_input_through_ada(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    family = tiny_dcgan(ada="fixed", ada_p=0.5)
    seen: list[int] = []
    pipe = family.augment.pipe
    original = type(pipe).__call__

    def spy(self: Any, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    d_inputs: list[torch.Tensor] = []
    hook = family.nets["discriminator"].register_forward_pre_hook(
        lambda _, args: d_inputs.append(args[0])
    )
    losses = family.train_step(batch())
    hook.remove()
    assert seen == [8, 4]  # D step: real + generated together; G step: generated
    assert [x.shape[0] for x in d_inputs] == seen
    assert losses["ada_p"] == 0.5 and "r_t" in losses
    assert "ada_p" not in tiny_dcgan().train_step(batch())  # DiffAugment: log unchanged


def test_dcgan_adaptive_p_rises_on_an_overfitting_discriminator_and_is_checkpointed() -> None:
    family = tiny_dcgan(ada="adaptive", ada_interval=1, ada_kimg=0.004)
    with torch.no_grad():  # a discriminator sure that every image is real: r_t = 1
        family.nets["discriminator"].head.bias.fill_(100.0)
    family.train_step(batch())
    assert family.augment.pipe.p == pytest.approx(1.0) and family.augment.pipe.r_t == 1.0
    state = family.state_dict()
    fresh = tiny_dcgan(ada="adaptive", ada_interval=1, ada_kimg=0.004)
    assert fresh.augment.pipe.p == 0.0
    fresh.load_state_dict(state)
    assert fresh.augment.stats() == family.augment.stats()


def test_dcgan_ada_is_refused_on_volumes_with_the_alternative() -> None:
    with pytest.raises(ConfigError, match="2D images"):
        tiny_dcgan(spatial_dims=3, ada="adaptive")
    tiny_dcgan(spatial_dims=3)  # DiffAugment (the default) works on volumes
