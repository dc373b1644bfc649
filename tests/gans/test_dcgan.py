"""The DCGAN family: every loss trains, conditioning works, DiffAugment behaves."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from medisynth.errors import ConfigError
from medisynth.gans.augment import (
    diff_augment,
    random_color,
    random_cutout,
    random_flip,
    random_translation,
)
from medisynth.gans.base import DataInfo
from medisynth.gans.dcgan import DCGAN, DCGANConfig
from medisynth.losses import discriminator_loss, generator_loss, gradient_penalty

DATA = DataInfo(channels=1, spatial_shape=(16, 16), class_names=["a", "b"])


def batch(n: int = 8) -> dict[str, torch.Tensor]:
    return {"image": torch.rand(n, 1, 16, 16) * 2 - 1, "label": torch.arange(n) % 2}


def small(**settings: object) -> DCGANConfig:
    return DCGANConfig(g_channels=4, d_channels=4, latent_dim=8, **settings)  # type: ignore[arg-type]


def test_defaults_are_the_calibrated_recipe() -> None:
    cfg = DCGANConfig()
    assert cfg.loss == "hinge" and cfg.spectral_norm and cfg.conditional
    assert cfg.diffaugment == ["translation", "cutout"]
    assert cfg.lr_d == pytest.approx(2 * cfg.lr_g)
    assert cfg.betas == (0.0, 0.9)
    assert cfg.bn_refresh_batches > 0
    assert cfg.class_loss_weight == 1.0 and cfg.class_networks == "shared"


@pytest.mark.parametrize(
    "settings",
    [
        {"loss": "bce", "spectral_norm": False, "d_batch_norm": True, "diffaugment": []},
        {"loss": "lsgan"},
        {"loss": "hinge", "r1_weight": 1.0},
        {"loss": "hinge", "lecam_weight": 0.3},
        {"loss": "hinge", "diversity_weight": 1.0},
        {"loss": "hinge", "class_loss_weight": 0.0},
        {"class_networks": "separate"},
        {"loss": "wgan-gp", "spectral_norm": False, "diversity_weight": 1.0},
        {"conditional": False},
    ],
    ids=[
        "bce",
        "lsgan",
        "r1",
        "lecam",
        "seeking",
        "no-class-loss",
        "per-class",
        "wgan-gp",
        "uncond",
    ],
)
def test_each_setting_trains_and_moves_both_networks(settings: dict) -> None:
    torch.manual_seed(0)
    gan = DCGAN.build(small(**settings), DATA)
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in gan.modules()}
    losses = gan.train_step(batch())
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    for name, net in gan.modules():
        changed = any(
            not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)
        )
        assert changed, f"{name} did not update"


def test_lecam_anchors_are_moving_means_of_the_discriminator_on_real_images() -> None:
    torch.manual_seed(0)
    gan = DCGAN.build(small(lecam_weight=0.3), DATA)
    first = gan.train_step(batch())["d_real"]
    assert gan.lecam_anchors is not None
    assert float(gan.lecam_anchors[0]) == pytest.approx(first, rel=1e-5)
    second = gan.train_step(batch())["d_real"]
    assert float(gan.lecam_anchors[0]) == pytest.approx(0.99 * first + 0.01 * second, rel=1e-5)
    assert torch.equal(gan.state_dict()["lecam_anchors"], gan.lecam_anchors)


def test_mode_seeking_pairs_generated_images_of_one_class() -> None:
    """With ``diversity_weight``, image i and i + n/2 of the generated batch share a class, and
    the generator loss grows by exactly weight / (ratio + 1e-5) of that batch's pairs."""
    seen: list[torch.Tensor] = []
    runs = []
    for weight in (0.0, 1.0, 2.0):
        torch.manual_seed(0)
        gan = DCGAN.build(small(diversity_weight=weight, diffaugment=[]), DATA)
        generator = gan.nets["generator"]
        hook = generator.register_forward_hook(lambda _m, args, _o: seen.append(args[1]))
        labels = torch.tensor([0, 0, 1, 1, 1, 0, 1, 0])
        runs.append(gan.train_step({"image": torch.rand(8, 1, 16, 16) * 2 - 1, "label": labels}))
        hook.remove()
    assert torch.equal(seen[0], labels)  # off: the generated batch takes the real batch's labels
    assert torch.equal(seen[1], labels[[0, 1, 2, 3, 0, 1, 2, 3]])
    assert "diversity" not in runs[0]
    once, twice = runs[1], runs[2]
    assert once["diversity"] == twice["diversity"] > 0 and once["d_loss"] == twice["d_loss"]
    assert twice["g_loss"] - once["g_loss"] == pytest.approx(1 / (once["diversity"] + 1e-5))


def test_per_class_networks_learn_only_from_their_own_class() -> None:
    """``class_networks="separate"``: a batch of class 0 moves class 0's generator and
    discriminator and leaves class 1's untouched; sampling routes each label to its generator."""
    torch.manual_seed(0)
    gan = DCGAN.build(small(class_networks="separate"), DATA)
    before = {
        name: [[p.detach().clone() for p in sub.parameters()] for sub in net.nets]  # type: ignore[union-attr]
        for name, net in gan.modules()
    }
    gan.train_step({"image": torch.rand(6, 1, 16, 16) * 2 - 1, "label": torch.zeros(6).long()})
    for name, net in gan.modules():
        for c, moved in ((0, True), (1, False)):
            now = net.nets[c].parameters()  # type: ignore[index]
            changed = any(not torch.equal(a, b) for a, b in zip(before[name][c], now, strict=True))
            assert changed is moved, f"{name} of class {c}"
    labels = torch.tensor([1, 0, 1])
    z = torch.randn(3, 8)
    generator = gan.nets["generator"].eval()
    want = torch.cat([generator.nets[int(y)](z[i : i + 1]) for i, y in enumerate(labels)])
    torch.testing.assert_close(generator(z, labels), want)


def test_class_loss_trains_the_auxiliary_classifier_on_real_images_only() -> None:
    """``class_loss_weight``: D's class head is scored by cross-entropy on the real batch (the
    value before the step's update), and both networks report their class losses."""
    torch.manual_seed(0)
    gan = DCGAN.build(small(class_loss_weight=1.0, diffaugment=[]), DATA)
    real = batch()
    twin = copy.deepcopy(gan.nets["discriminator"])  # spectral norm's power step, done once
    with torch.no_grad():
        _, logits = twin(real["image"], real["label"], with_logits=True)
    want = F.cross_entropy(logits, real["label"])
    losses = gan.train_step(real)
    assert losses["d_class"] == pytest.approx(float(want), rel=1e-5)
    assert losses["g_class"] > 0


def test_auxiliary_classifier_only_with_shared_class_networks() -> None:
    shared = DCGAN.build(small(), DATA)  # on by default
    assert shared.nets["discriminator"].classifier is not None
    assert {"d_class", "g_class"} <= set(shared.train_step(batch()))
    for cfg in (small(class_networks="separate"), small(class_loss_weight=0.0)):
        losses = DCGAN.build(cfg, DATA).train_step(batch())
        assert "d_class" not in losses and "g_class" not in losses


def test_generator_step_leaves_the_discriminator_trainable() -> None:
    gan = DCGAN.build(small(), DATA)
    gan.train_step(batch())
    assert all(p.requires_grad for p in gan.nets["discriminator"].parameters())


def test_sampling_respects_labels_and_is_reproducible() -> None:
    gan = DCGAN.build(small(), DATA)
    gan.train_step(batch())
    a = gan.sample(4, torch.tensor([0, 0, 1, 1]), generator=torch.Generator().manual_seed(1))
    b = gan.sample(4, torch.tensor([0, 0, 1, 1]), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="labels must be in 0..1"):
        gan.sample(2, torch.tensor([0, 5]))
    grid, per_row = gan.sample_grid()
    assert grid.shape[0] == 2 * per_row  # one row per class


def test_batchnorm_refresh_sets_the_ema_statistics_from_samples() -> None:
    import copy

    gan = DCGAN.build(small(bn_refresh_batches=2), DATA)
    ema = copy.deepcopy(gan.nets["generator"]).eval()
    gan.ema_nets["generator"] = ema
    norm = ema.norms[0].norm  # type: ignore[index]
    norm.running_mean.fill_(123.0)
    gan.prepare_for_sampling()
    assert not torch.allclose(norm.running_mean, torch.full_like(norm.running_mean, 123.0))
    assert not ema.training


def test_losses_match_their_definitions() -> None:
    real, fake = torch.tensor([0.3, -2.0]), torch.tensor([0.5, -1.0])
    bce = F.binary_cross_entropy_with_logits
    expected = bce(real, torch.ones(2)) + bce(fake, torch.zeros(2))
    assert discriminator_loss("bce", real, fake) == pytest.approx(expected.item())
    assert generator_loss("bce", fake) == pytest.approx(bce(fake, torch.ones(2)).item())
    hinge = torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()
    assert discriminator_loss("hinge", real, fake) == pytest.approx(hinge.item())
    assert discriminator_loss("lsgan", torch.ones(2), torch.zeros(2)) == 0
    assert discriminator_loss("wgan-gp", real, fake) == pytest.approx(
        (fake.mean() - real.mean()).item()
    )
    with pytest.raises(ConfigError, match="known losses"):
        generator_loss("minimax", fake)


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic() -> None:
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[0.6, 0.8, 0.0, 0.0]]))
    gp = gradient_penalty(critic, torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2))
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


def test_translation_shifts_content_and_fills_the_border() -> None:
    torch.manual_seed(0)
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(16, 1, 1, 1)
    out = random_translation(x, ratio=0.25, fill=-1.0)
    assert out.shape == x.shape
    values = set(out.unique().tolist())
    assert values <= set(x.unique().tolist()) | {-1.0}
    assert any(not torch.equal(out[i], x[i]) for i in range(16))  # some images moved
    kept = out[out != -1]
    assert len(kept) >= 16 * 36  # at most 2 of 8 rows and columns shifted out


def test_cutout_blanks_one_box_per_image() -> None:
    torch.manual_seed(0)
    x = torch.ones(8, 2, 16, 16)
    out = random_cutout(x, ratio=0.5, fill=0.0)
    blanked = (out == 0).flatten(1).sum(1)
    assert (blanked > 0).all() and (blanked <= 2 * 8 * 8).all()
    assert torch.equal(out[:, 0] == 0, out[:, 1] == 0)  # same box in every channel


def test_color_is_an_affine_intensity_change_per_image() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 6, 6) * 2 - 1
    out = random_color(x)
    # each image is a*x + b with a in [0.5, 1.5] (contrast) and some offset (brightness)
    xc = x - x.mean(dim=(1, 2, 3), keepdim=True)
    oc = out - out.mean(dim=(1, 2, 3), keepdim=True)
    scale = (oc * xc).sum(dim=(1, 2, 3)) / (xc * xc).sum(dim=(1, 2, 3))
    assert torch.allclose(oc, scale.view(-1, 1, 1, 1) * xc, atol=1e-5)
    assert scale.min() >= 0.5 - 1e-5 and scale.max() <= 1.5 + 1e-5
    assert scale.std() > 0.1  # random per image
    shift = out.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 + 1e-5 and shift.std() > 0.1
    rgb = random_color(torch.rand(8, 3, 4, 4))  # saturation only changes multi-channel images
    assert rgb.shape == (8, 3, 4, 4)


def test_flip_mirrors_about_half_of_the_images_left_right() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 2, 5, 7)
    out = random_flip(x)
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    assert bool((same ^ mirrored).all())  # each image is itself or its mirror image
    assert 70 < int(mirrored.sum()) < 130


def test_diffaugment_is_differentiable_and_3d_capable() -> None:
    x = torch.randn(2, 1, 8, 8, 8, requires_grad=True)
    diff_augment(x, ["flip", "color", "translation", "cutout"]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="unknown augmentation"):
        diff_augment(x, ["colour"])
