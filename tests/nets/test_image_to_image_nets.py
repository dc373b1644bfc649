"""U-Net, ResNet generator and PatchGAN: one code path for 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.nets.patchgan import PatchDiscriminator, patchgan_min_size
from medisynth.nets.resnet_generator import ResnetGenerator
from medisynth.nets.unet import UNet, check_divisible


@pytest.mark.parametrize("upsampling", ["transposed", "resize"])
@pytest.mark.parametrize(("dims", "size", "depth"), [(2, 32, 4), (2, 16, 2), (3, 16, 3), (3, 8, 2)])
def test_unet_keeps_the_shape_and_range(dims: int, size: int, depth: int, upsampling: str) -> None:
    net = UNet(2, 1, channels=4, depth=depth, spatial_dims=dims, upsampling=upsampling)  # type: ignore[arg-type]
    transposed = (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    assert any(isinstance(m, transposed) for m in net.modules()) == (upsampling == "transposed")
    x = torch.randn(2, 2, *(size,) * dims) * 3
    y = net(x)
    assert y.shape == (2, 1, *(size,) * dims)
    assert float(y.detach().abs().max()) <= 1.0
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    assert any(isinstance(m, conv) for m in net.modules())


def test_unet_skips_reach_the_output() -> None:
    """The finest skip connection carries the input's detail: a one-pixel change moves the
    output at that place."""
    torch.manual_seed(0)
    net = UNet(1, 1, channels=4, depth=3).eval()
    x = torch.zeros(1, 1, 16, 16)
    bumped = x.clone()
    bumped[0, 0, 5, 5] = 1.0
    diff = (net(bumped) - net(x)).abs()[0, 0]
    assert diff[4:7, 4:7].sum() > 0


@pytest.mark.parametrize("dims", [2, 3])
def test_resnet_generator_shapes(dims: int) -> None:
    net = ResnetGenerator(1, 3, channels=4, n_blocks=2, n_down=2, spatial_dims=dims)
    y = net(torch.randn(1, 1, *(8,) * dims))
    assert y.shape == (1, 3, *(8,) * dims)
    assert sum(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules()) == (
        0 if dims == 2 else 2 * 2 + 2 + 2 + 1
    )


@pytest.mark.parametrize(
    ("dims", "layers", "size", "out"), [(2, 3, 32, 2), (2, 2, 16, 2), (3, 1, 8, 2)]
)
def test_patchgan_scores_one_per_patch(dims: int, layers: int, size: int, out: int) -> None:
    net = PatchDiscriminator(2, channels=4, n_layers=layers, spatial_dims=dims)
    scores, features = net(torch.randn(3, 2, *(size,) * dims), return_features=True)
    assert scores.shape == (3, 1, *(out,) * dims)
    assert len(features) == layers + 1


def test_size_checks_explain_what_to_change() -> None:
    with pytest.raises(ConfigError, match="divisible by 8"):
        check_divisible((24, 20), 8, "a U-Net of depth 3")
    net = PatchDiscriminator(1, channels=4, n_layers=3)
    assert patchgan_min_size(3) == 24
    with pytest.raises(ConfigError, match="lower model.d_layers"):
        net.check_size((16, 16))
    with pytest.raises(ConfigError, match="at least 2"):
        UNet(1, 1, depth=1)
    with pytest.raises(ConfigError, match="spatial_dims"):
        UNet(1, 1, spatial_dims=4)
