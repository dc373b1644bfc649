"""DCGAN networks: every supported size and channel count, 2D and 3D, conditioning."""

from __future__ import annotations

import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.nets import ConditionalBatchNorm, DCGANDiscriminator, DCGANGenerator
from medisynth.nets.dcgan import _upsampling, resolution_ladder


@pytest.mark.parametrize("size", [28, 32, 48, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_generator_and_discriminator_shapes(size: int, channels: int, upsample: str) -> None:
    g = DCGANGenerator(8, channels, size, base_channels=4, num_classes=2, upsample=upsample)
    d = DCGANDiscriminator(channels, size, base_channels=4, num_classes=2)
    labels = torch.tensor([0, 1])
    images = g(torch.randn(2, 8), labels)
    assert images.shape == (2, channels, size, size)
    assert images.abs().max() <= 1.0
    assert d(images, labels).shape == (2,)


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_volumes_with_spatial_dims_3(upsample: str) -> None:
    g = DCGANGenerator(8, 1, 16, base_channels=4, num_classes=3, spatial_dims=3, upsample=upsample)
    d = DCGANDiscriminator(1, 16, base_channels=4, num_classes=3, spatial_dims=3)
    labels = torch.tensor([0, 2])
    volumes = g(torch.randn(2, 8), labels)
    assert volumes.shape == (2, 1, 16, 16, 16)
    assert d(volumes, labels).shape == (2,)


@pytest.mark.parametrize("size", [100, 24 * 32 + 1, 4])
def test_unsupported_sizes_are_explained(size: int) -> None:
    with pytest.raises(ConfigError, match="data.image_size"):
        resolution_ladder(size)


def test_labels_change_the_generated_image() -> None:
    torch.manual_seed(0)
    g = DCGANGenerator(8, 1, 28, base_channels=4, num_classes=2)
    with torch.no_grad():
        for norm in g.norms:
            norm.shift.weight.normal_()  # type: ignore[union-attr]
    g.eval()
    z = torch.randn(1, 8).repeat(2, 1)
    out = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_conditional_batch_norm_starts_as_plain_batch_norm() -> None:
    x = torch.randn(6, 4, 3, 3)
    conditional = ConditionalBatchNorm(4, num_classes=3)
    plain = torch.nn.BatchNorm2d(4, affine=False)
    assert torch.allclose(conditional(x, torch.tensor([0, 1, 2, 0, 1, 2])), plain(x), atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        conditional(x)


def test_spectral_norm_bounds_the_discriminator_weights() -> None:
    d = DCGANDiscriminator(1, 32, base_channels=4, spectral_norm=True)
    x = torch.randn(4, 1, 32, 32)
    for _ in range(20):  # power iterations converge in training mode
        d(x)
    d.eval()
    conv = d.features[0]
    sigma = float(torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2))
    assert sigma == pytest.approx(1.0, abs=0.05)
    plain = DCGANDiscriminator(1, 32, base_channels=4, spectral_norm=False, batch_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_resize_upsampling_makes_no_checkerboard(spatial_dims: int) -> None:
    """A flat feature map stays flat through a resize doubling; a transposed convolution with
    the same random weights stamps its 2-periodic kernel pattern on it (Odena et al. 2016)."""
    torch.manual_seed(0)
    flat = torch.ones(1, 4, *([6] * spatial_dims))
    inner = (slice(None), slice(None)) + (slice(2, -2),) * spatial_dims  # away from padding
    for mode, patterned in (("resize", False), ("transposed", True)):
        out = _upsampling(4, 2, False, spatial_dims, mode)(flat)[inner]
        spread = out.flatten(2).std(dim=2).max().item()
        assert (spread > 1e-3) == patterned, (mode, spread)
