"""Style-based networks: modulated convolution, mapping, synthesis, discriminator, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medisynth.errors import ConfigError
from medisynth.gans.style_losses import logistic_d_loss, logistic_g_loss, r1_penalty
from medisynth.nets.style import (
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    MinibatchStd,
    StyleDiscriminator,
    StyleGenerator,
    SynthesisNetwork,
    crop_to_size,
    fused_modconv_default,
    modulated_conv2d,
    pad_to_size,
    synthesis_resolution,
)

TINY = {"channel_base": 64, "channel_max": 8}


def tiny_generator(**kwargs: object) -> StyleGenerator:
    settings: dict[str, object] = {"z_dim": 8, "w_dim": 8, **TINY, **kwargs}
    return StyleGenerator(**settings)  # type: ignore[arg-type]


def loop_modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, padding: int
) -> torch.Tensor:
    """The definition, one image at a time: each its own modulated (demodulated) weight."""
    outputs = []
    for n in range(x.shape[0]):
        w = weight * styles[n].view(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        outputs.append(F.conv2d(x[n : n + 1], w, padding=padding))
    return torch.cat(outputs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("fused", [True, False])
def test_grouped_modulated_conv_equals_the_per_image_loop(
    demodulate: bool, padding: int, fused: bool
) -> None:
    """Both forms (grouped per-image weights; styles on the inputs + demodulated outputs)."""
    torch.manual_seed(0)
    x, weight, styles = torch.randn(5, 6, 9, 9), torch.randn(7, 6, 3, 3), torch.randn(5, 6)
    out = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=padding, fused=fused)
    expected = loop_modulated_conv2d(x, weight, styles, demodulate, padding)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5)


def test_modulated_conv_is_unfused_on_the_cpu_and_both_forms_agree_in_bf16() -> None:
    torch.manual_seed(0)
    x, weight, styles = torch.randn(4, 8, 6, 6), torch.randn(5, 8, 3, 3), torch.rand(4, 8) + 0.5
    assert fused_modconv_default(x) is False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = modulated_conv2d(x, weight, styles, padding=1, fused=True)
        unfused = modulated_conv2d(x, weight, styles, padding=1)
    assert unfused.dtype == torch.bfloat16
    assert torch.allclose(fused.float(), unfused.float(), atol=0.1)
    default = modulated_conv2d(x, weight, styles, padding=1)
    assert torch.equal(default, modulated_conv2d(x, weight, styles, padding=1, fused=False))


def test_modulated_conv_rejects_mismatched_styles() -> None:
    with pytest.raises(ValueError, match="styles"):
        modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(4, 3, 3, 3), torch.randn(2, 5))


def test_demodulation_keeps_unit_variance() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 32, 12, 12)
    weight = torch.randn(32, 32, 3, 3)
    styles = torch.randn(16, 32) * 3 + 1  # random scales, far from 1
    demodulated = modulated_conv2d(x, weight, styles, demodulate=True)
    assert 0.8 < demodulated.std().item() < 1.2
    plain = modulated_conv2d(x, weight, styles, demodulate=False)
    assert plain.std().item() > 5  # without demodulation the scale grows with the styles


def test_equalised_layers_scale_weights_at_run_time() -> None:
    torch.manual_seed(0)
    linear = EqualLinear(256, 64, lr_multiplier=0.01, bias_init=1.0)
    x = torch.randn(128, 256)
    expected = F.linear(x, linear.weight * 0.01 / 16, linear.bias * 0.01)  # type: ignore[operator]
    assert torch.allclose(linear(x), expected, atol=1e-6)
    assert linear.weight.std().item() == pytest.approx(100, rel=0.05)  # stored N(0, 1) / lr
    conv = EqualConv2d(64, 64, 3, bias=False)
    out = conv(torch.randn(8, 64, 10, 10))[..., 1:-1, 1:-1]
    assert 0.9 < out.std().item() < 1.1  # unit variance in, unit variance out


def test_sizes_pad_and_crop() -> None:
    assert [synthesis_resolution(s) for s in (5, 8, 28, 32, 48, 256)] == [8, 8, 32, 32, 64, 256]
    for size in (4, 257, 512):
        with pytest.raises(ConfigError, match="data.image_size"):
            synthesis_resolution(size)
    x = torch.randn(2, 1, 28, 28)
    padded = pad_to_size(x, 32)
    assert padded.shape == (2, 1, 32, 32)
    assert torch.equal(padded[..., :2, 2:30], x[..., :1, :].expand(-1, -1, 2, -1))  # edge repeated
    assert torch.equal(crop_to_size(padded, 28), x)
    with pytest.raises(ConfigError, match="power of two"):
        SynthesisNetwork(8, 28)


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_output_shapes(resolution: int, channels: int) -> None:
    torch.manual_seed(0)
    g = tiny_generator(num_classes=3, resolution=resolution, img_channels=channels)
    images = g(torch.randn(2, 8), torch.tensor([0, 2]))
    assert images.shape == (2, channels, resolution, resolution)
    assert torch.isfinite(images).all()
    assert g.num_ws == 2 * (resolution.bit_length() - 1) - 2  # 2 log2(res) - 2, as StyleGAN2


def test_28_pixel_images_are_synthesised_at_32_and_cropped() -> None:
    torch.manual_seed(0)
    g = tiny_generator(resolution=28).eval()
    z = torch.randn(3, 8)
    images = g(z, noise_mode="const")
    assert images.shape == (3, 1, 28, 28)
    full = g.synthesis(g.mapping(z).unsqueeze(1).repeat(1, g.num_ws, 1), noise_mode="const")
    assert torch.allclose(images, full[..., 2:30, 2:30])
    d = StyleDiscriminator(resolution=28, **TINY)
    assert d(images).shape == (3,)
    with pytest.raises(ValueError, match="28x28"):
        d(torch.randn(3, 1, 30, 30))


def test_mapping_tracks_the_mean_style_of_each_class() -> None:
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=4, w_dim=5, num_classes=3, layers=2)
    labels = torch.tensor([0, 0, 1, 0])  # class 2 absent
    z = torch.randn(4, 4)
    w = mapping(z, labels)
    expected = torch.zeros(3, 5)
    expected[0] = 0.005 * w[[0, 1, 3]].mean(dim=0)
    expected[1] = 0.005 * w[2]
    assert torch.allclose(mapping.w_avg, expected, atol=1e-7)
    mapping.eval()
    before = mapping.w_avg.clone()
    mapping(z, labels)
    assert torch.equal(mapping.w_avg, before)  # evaluation leaves the average alone
    with pytest.raises(ValueError, match="labels"):
        mapping(z)


def test_truncation_zero_gives_the_class_mean_style() -> None:
    torch.manual_seed(0)
    g = tiny_generator(num_classes=2, resolution=16)
    for _ in range(5):  # training-mode passes move w_avg
        g(torch.randn(8, 8), torch.arange(8) % 2)
    g.eval()
    z = torch.randn(2, 8)
    same = torch.tensor([1, 1])
    w = g.mapping.truncate(g.mapping(z, same), 0.0, same)
    assert torch.equal(w, g.mapping.w_avg[same])
    for layer in g.modules():  # noise on, so only the fixed maps keep images equal
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.5)
    images = g(z, same, truncation_psi=0.0, noise_mode="const")
    assert torch.allclose(images[0], images[1], atol=1e-6)
    assert not torch.allclose(images, g(z, same, noise_mode="const"), atol=1e-3)
    classes = g(z, torch.tensor([0, 1]), truncation_psi=0.0, noise_mode="const")
    assert not torch.allclose(classes[0], classes[1], atol=1e-3)


def test_noise_modes_and_generator_seed() -> None:
    torch.manual_seed(0)
    g = tiny_generator(resolution=16).eval()
    for layer in g.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.5)
    z = torch.randn(2, 8)
    assert torch.equal(g(z, noise_mode="const"), g(z, noise_mode="const"))
    assert not torch.allclose(g(z, noise_mode="random"), g(z, noise_mode="random"))
    seeded = [g(z, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1])
    assert not torch.allclose(g(z, noise_mode="none"), g(z, noise_mode="const"))
    with pytest.raises(ConfigError, match="noise mode"):
        g(z, noise_mode="loud")  # type: ignore[arg-type]


def test_style_mixing_changes_the_later_styles_and_trains() -> None:
    torch.manual_seed(0)
    g = tiny_generator(num_classes=2, resolution=16)
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
    g.eval()
    plain = g(z, labels, noise_mode="const")
    mixed = g(
        z, labels, noise_mode="const", mix_prob=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert mixed.shape == plain.shape
    assert not torch.allclose(mixed, plain, atol=1e-4)
    g.train()
    g(z, labels, mix_prob=1.0).square().mean().backward()
    assert all(p.grad is not None for p in g.mapping.parameters())


def test_minibatch_std_matches_the_explicit_group_statistic() -> None:
    torch.manual_seed(0)
    layer = MinibatchStd(group_size=4)
    x = torch.randn(8, 3, 2, 2)
    out = layer(x)
    assert out.shape == (8, 4, 2, 2)
    assert torch.equal(out[:, :3], x)
    for i in range(8):  # groups: images with the same index modulo N / G = 2
        group = x[i % 2 :: 2]
        expected = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(out[i, 3], expected.expand(2, 2), atol=1e-6)
    odd = torch.randn(5, 3, 2, 2)  # not divisible by 4: the whole batch is one group
    expected = (odd.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    assert torch.allclose(layer(odd)[:, 3], expected.expand(5, 2, 2), atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3, 4, 5])
def test_discriminator_handles_any_batch_size(batch: int) -> None:
    torch.manual_seed(0)
    d = StyleDiscriminator(resolution=32, img_channels=3, num_classes=2, **TINY)
    logits = d(torch.randn(batch, 3, 32, 32), torch.arange(batch) % 2)
    assert logits.shape == (batch,)
    assert torch.isfinite(logits).all()


def test_projection_discriminator_uses_the_label() -> None:
    torch.manual_seed(0)
    d = StyleDiscriminator(resolution=16, num_classes=3, **TINY)
    x = torch.randn(1, 1, 16, 16).repeat(3, 1, 1, 1)
    logits = d(x, torch.tensor([0, 1, 2]))
    assert len(set(logits.tolist())) == 3
    with pytest.raises(ValueError, match="labels"):
        d(x)
    assert StyleDiscriminator(resolution=16, **TINY)(x).shape == (3,)


def toy_images() -> tuple[torch.Tensor, torch.Tensor]:
    """16 images 16x16: discs (class 0) and bars (class 1), in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    disc = ((yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 25).float()
    bar = ((xx > 5) & (xx < 10)).float()
    labels = torch.arange(16) % 2
    images = torch.stack([disc if int(c) == 0 else bar for c in labels]).unsqueeze(1)
    return images * 2 - 1, labels


def test_tiny_gan_trains_end_to_end() -> None:
    """30 steps of the logistic loss with lazy R1: D learns to tell reals from fakes, every
    generator parameter gets a gradient (mapping, synthesis, noise strengths), and each class's
    mean generated image moves towards the class's mean real image."""
    torch.manual_seed(0)
    reals, labels = toy_images()
    g = tiny_generator(num_classes=2, resolution=16)
    d = StyleDiscriminator(resolution=16, num_classes=2, **TINY)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(d.parameters(), lr=5e-3, betas=(0.0, 0.99))
    z_eval = torch.randn(16, 8)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            fakes = g(z_eval, labels, noise_mode="const")
            loss = logistic_d_loss(d(reals, labels), d(fakes, labels)).item()
        gap = sum(
            (fakes[labels == c].mean(0) - reals[labels == c].mean(0)).square().mean().item()
            for c in (0, 1)
        )
        return loss, gap

    start_loss, start_gap = evaluate()
    for step in range(30):
        z = torch.randn(16, 8)
        loss = logistic_d_loss(d(reals, labels), d(g(z, labels).detach(), labels))
        if step % 4 == 0:  # lazy R1
            real = reals.detach().requires_grad_(True)
            loss = loss + r1_penalty(d(real, labels), real, gamma=0.1, interval=4)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        logistic_g_loss(d(g(z, labels, mix_prob=0.5), labels)).backward()
        missing = [name for name, p in g.named_parameters() if p.grad is None]
        assert not missing
        opt_g.step()
    loss, gap = evaluate()
    assert loss < start_loss - 0.3
    assert gap < 0.95 * start_gap


def test_weights_round_trip_through_safetensors() -> None:
    from safetensors.torch import load, save

    torch.manual_seed(0)
    g = tiny_generator(num_classes=2, resolution=28)
    g(torch.randn(4, 8), torch.tensor([0, 1, 0, 1]))  # move w_avg away from zero
    copy = tiny_generator(num_classes=2, resolution=28)
    copy.load_state_dict(load(save(g.state_dict())))  # buffers too: w_avg, fixed noise maps
    g.eval()
    copy.eval()
    z, labels = torch.randn(3, 8), torch.tensor([0, 1, 1])
    kwargs = {"truncation_psi": 0.7, "noise_mode": "const"}
    assert torch.equal(g(z, labels, **kwargs), copy(z, labels, **kwargs))  # type: ignore[arg-type]
    d = StyleDiscriminator(resolution=28, num_classes=2, **TINY)
    assert set(load(save(d.state_dict()))) == set(d.state_dict())


def test_bfloat16_autocast_runs_forward_and_backward() -> None:
    torch.manual_seed(0)
    g = tiny_generator(num_classes=2, resolution=16)
    d = StyleDiscriminator(resolution=16, num_classes=2, **TINY)
    labels = torch.tensor([0, 1, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = d(g(torch.randn(3, 8), labels, mix_prob=1.0), labels)
    assert torch.isfinite(logits.float()).all()
    logistic_g_loss(logits).backward()
    assert all(torch.isfinite(p.grad).all() for p in g.parameters() if p.grad is not None)
