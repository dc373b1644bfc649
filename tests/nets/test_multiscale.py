"""Networks of the multi-scale patch GAN: shapes in 2D and 3D, residual start, receptive radii."""

from __future__ import annotations

import pytest
import torch

from medisynth.nets.multiscale import (
    BaseGenerator,
    MinibatchStd,
    MultiScaleDiscriminator,
    MultiScaleGenerator,
    PatchRefiner,
    downsample,
    noise_map,
    upsample2,
)


@pytest.mark.parametrize("dims", [2, 3])
def test_shapes_in_2d_and_3d(dims: int) -> None:
    torch.manual_seed(0)
    g = MultiScaleGenerator(
        2,
        channels=2,
        latent_dim=3,
        base_channels=4,
        patch_channels=4,
        res_blocks=1,
        cond_channels=1,
        spatial_dims=dims,
    )
    noise = noise_map(3, (2,) * dims, n=2)
    cond0 = torch.randn(2, 1, *([8] * dims))
    ups = [torch.randn(3, 2, *([16] * dims)), torch.randn(3, 2, *([12] * dims))]
    conds = [torch.randn(3, 1, *([16] * dims)), torch.randn(3, 1, *([12] * dims))]
    outs = g(noise, cond0, ups, conds)
    assert [tuple(o.shape) for o in outs] == [
        (2, 2, *([8] * dims)),
        (3, 2, *([16] * dims)),
        (3, 2, *([12] * dims)),
    ]
    assert outs[0].abs().max() <= 1.0  # tanh output
    d = MultiScaleDiscriminator(
        [8, 16, 12], channels=2, width=4, cond_channels=1, spatial_dims=dims
    )
    contexts = [cond0, torch.cat([ups[0], conds[0]], 1), torch.cat([ups[1], conds[1]], 1)]
    scores = d(outs, contexts)
    assert all(s.shape[:2] == (o.shape[0], 1) for s, o in zip(scores, outs, strict=True))
    assert all(min(s.shape[2:]) >= 2 for s in scores)


def test_class_conditional_level0_and_minibatch_std_of_level0_only() -> None:
    torch.manual_seed(0)
    base = BaseGenerator(3, 1, 4, spatial_dims=2, num_classes=2)
    z = noise_map(3, (2, 2), n=1).expand(2, -1, -1, -1)  # the same noise, two classes
    out = base(z, labels=torch.tensor([0, 1]))
    assert out.shape == (2, 1, 8, 8) and not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="class-conditional"):
        base(z)
    d = MultiScaleDiscriminator([8, 16], channels=1, width=4, spatial_dims=2, minibatch_std=True)
    assert [any(isinstance(m, MinibatchStd) for m in disc.modules()) for disc in d.discs] == [
        True,
        False,
    ]
    same = torch.zeros(4, 3, 5, 5)
    assert MinibatchStd()(same)[:, 3].abs().max() == 0  # identical images: no spread
    assert MinibatchStd()(torch.randn(4, 3, 5, 5))[:, 3].min() > 0


def test_conditional_nets_refuse_a_missing_condition() -> None:
    with pytest.raises(ValueError, match="conditional"):
        PatchRefiner(1, 4, 1, cond_channels=1, spatial_dims=2)(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="conditional"):
        BaseGenerator(2, 1, 4, cond_channels=1, spatial_dims=2)(torch.zeros(1, 2, 2, 2))


def test_untrained_refiner_is_the_linear_upsampling_and_trains_away_from_it() -> None:
    torch.manual_seed(0)
    refiner = PatchRefiner(1, 4, 1, spatial_dims=3)
    low = torch.rand(2, 1, 4, 4, 4)
    up = upsample2(low)
    assert torch.equal(refiner(up), up)
    opt = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    target = torch.rand_like(up)
    for _ in range(3):
        loss = (refiner(up) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(refiner(up), up)


def test_resampling_round_trip() -> None:
    x = torch.rand(1, 1, 8, 8, 8)
    blocks = x.reshape(1, 1, 4, 2, 4, 2, 4, 2).mean(dim=(3, 5, 7))
    assert torch.allclose(downsample(x, 2), blocks, atol=1e-6)
    assert torch.allclose(upsample2(torch.full((1, 2, 3, 5), 0.25)), torch.tensor(0.25))
    assert downsample(x, 4).shape == (1, 1, 2, 2, 2)
    assert downsample(x, 1) is x


def _influence_radius(net: torch.nn.Module, x: torch.Tensor, scale: int) -> int:
    """How far (in output voxels) a change of one central input voxel reaches."""
    centre = tuple(s // 2 for s in x.shape[2:])
    y0 = net(x)
    x2 = x.clone()
    x2[(slice(None), slice(None)) + centre] += 1.0
    changed = ((net(x2) - y0).abs().amax(dim=(0, 1)) > 0).nonzero()
    lo, hi = changed.min(0).values, changed.max(0).values
    out_centre = torch.tensor([c * scale for c in centre])
    return int(max((out_centre - lo).max(), (hi - out_centre - scale + 1).max()))


@pytest.mark.parametrize("dims", [2, 3])
def test_declared_receptive_radii_bound_the_real_ones(dims: int) -> None:
    torch.manual_seed(0)
    refiner = PatchRefiner(1, 4, 2, spatial_dims=dims)
    torch.nn.init.normal_(refiner.out.weight)
    size = 21 if dims == 3 else 31
    with torch.no_grad():
        r = _influence_radius(refiner, torch.rand(1, 1, *([size] * dims)), 1)
        assert r == refiner.receptive_radius
        base = BaseGenerator(2, 1, 4, spatial_dims=dims)
        r0 = _influence_radius(base, torch.rand(1, 2 * 2 + dims, *([9] * dims)), 4)
    assert 0 < r0 <= base.receptive_radius
