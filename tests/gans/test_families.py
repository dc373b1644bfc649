"""The family registry and the contract every registered family must honour."""

from __future__ import annotations

import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.gans import FAMILIES, get_family
from medisynth.gans.base import DataInfo, GANFamily


def tiny_data(classes: int = 2) -> DataInfo:
    return DataInfo(
        channels=1,
        spatial_shape=(16, 16),
        class_names=[f"c{i}" for i in range(classes)],
        class_counts=dict.fromkeys(range(classes), 4),
    )


def tiny_batch(classes: int = 2, n: int = 8) -> dict[str, torch.Tensor]:
    return {"image": torch.rand(n, 1, 16, 16) * 2 - 1, "label": torch.arange(n) % classes}


#: image-to-image families: their own settings, and batches of {"source", "target"}
TRANSLATION_SETTINGS = {
    "pix2pix": {"g_channels": 4, "g_depth": 2, "d_channels": 4, "d_layers": 2},
    "cyclegan": {"g_channels": 4, "n_blocks": 1, "d_channels": 4, "d_layers": 2},
}
#: super-resolution families: their own settings, batches of high-resolution {"image"}
SR_SETTINGS = {"srgan": {"g_channels": 4, "n_blocks": 1, "d_channels": 4, "d_layers": 2}}


def test_unknown_family_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown GAN family 'dcgam' \(did you mean 'dcgan'\?\)"):
        get_family("dcgam")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_honours_the_contract(name: str) -> None:
    family_class = get_family(name)
    assert issubclass(family_class, GANFamily)
    settings = {**TRANSLATION_SETTINGS, **SR_SETTINGS}.get(
        name, {"g_channels": 4, "d_channels": 4, "latent_dim": 8}
    )
    config = family_class.config_class.model_validate({"family": name, **settings})
    torch.manual_seed(0)
    family = family_class.build(config, tiny_data())
    batch = tiny_batch()
    if name in TRANSLATION_SETTINGS:
        batch = {"source": batch["image"], "target": -batch["image"]}
    losses = family.train_step(batch)
    assert losses and all(isinstance(v, float) for v in losses.values())
    samples = family.sample(3, torch.tensor([0, 1, 1]))
    assert samples.shape == (3, 1, 16, 16) and samples.dtype == torch.float32
    grid, per_row = family.sample_grid()
    assert grid.ndim == 4 and per_row >= 1
    state = family.state_dict()
    other = family_class.build(config, tiny_data())
    other.load_state_dict(state)
    for (_, a), (_, b) in zip(family.modules(), other.modules(), strict=True):
        for ta, tb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(ta, tb)
    assert family.inference_nets()
