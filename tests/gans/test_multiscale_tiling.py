"""Tiled multi-scale inference: blending weights, exactness of tiling against one whole pass,
memory release of memmaps, block-mean downsampling, 2D and 3D."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.gans.multiscale_tiling import (
    Scratch,
    TileSettings,
    downsample_array,
    plan_axis,
    plan_tiles,
    release_pages,
    run_tiled,
    synthesize,
)
from medisynth.nets.multiscale import MultiScaleGenerator


@pytest.mark.parametrize("ramp", ["linear", "cosine", "none"])
@pytest.mark.parametrize(
    ("size", "tile", "overlap", "align"),
    [
        (100, 48, 8, 2),
        (121, 64, 8, 1),
        (64, 64, 8, 4),
        (40, 16, 8, 4),
        (96, 20, 6, 2),
        (7, 3, 1, 1),
    ],
)
def test_axis_weights_partition_unity(
    size: int, tile: int, overlap: int, align: int, ramp: str
) -> None:
    starts, weights = plan_axis(size, tile, overlap, align, ramp)  # type: ignore[arg-type]
    total = np.zeros(size)
    for start, w in zip(starts, weights, strict=True):
        assert start % align == 0 and start + len(w) <= size
        assert (w > 0).all()
        total[start : start + len(w)] += w
    assert np.allclose(total, 1.0, atol=1e-6)
    assert starts[0] == 0 and starts[-1] + len(weights[-1]) == size
    if len(starts) > 1 and ramp != "none":  # a neighbour's share ramps, it does not jump
        overlap_len = starts[0] + len(weights[0]) - starts[1]
        assert overlap_len >= min(overlap, tile // 2) - align


@pytest.mark.parametrize("shape", [(30, 22), (24, 40, 16)])
def test_tiles_cover_every_voxel_once_after_blending(shape: tuple[int, ...]) -> None:
    tiles = plan_tiles(shape, tile=12, overlap=4, margin=5, align=2, ramp="cosine")
    total = np.zeros(shape)
    for t in tiles:
        region = tuple(slice(s, e) for s, e in zip(t.start, t.stop, strict=True))
        total[region] += t.weight()
        for lo, hi, s, e, n in zip(t.lo, t.hi, t.start, t.stop, shape, strict=True):
            assert lo == max(0, s - 6) and hi == min(n, e + 6)  # margin rounded up to align
            assert lo % 2 == 0 and hi % 2 == 0
    assert np.allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_run_tiled_reproduces_a_pointwise_function_exactly(dims: int) -> None:
    rng = np.random.default_rng(0)
    shape = (26, 18) if dims == 2 else (14, 10, 18)
    src = rng.random((2, *shape)).astype(np.float32)
    cond = rng.random((1, *[2 * s for s in shape])).astype(np.float32)
    out = np.zeros((2, *[2 * s for s in shape]), np.float32)

    def fn(xs: list[torch.Tensor]) -> torch.Tensor:
        up = xs[0]
        for axis in range(2, 2 + dims):
            up = up.repeat_interleave(2, axis)
        return up * 2 + xs[1]

    count = run_tiled(fn, [(src, 2), (cond, 1)], out, tile=8, overlap=2, margin=2, align=2, batch=3)
    assert count > 8
    expected = np.kron(src, np.ones((1,) + (2,) * dims)) * 2 + cond
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def _random_generator(dims: int, cond: int = 0, levels: int = 2) -> MultiScaleGenerator:
    torch.manual_seed(1)
    g = MultiScaleGenerator(
        levels,
        channels=1,
        latent_dim=3,
        base_channels=4,
        patch_channels=4,
        res_blocks=1,
        cond_channels=cond,
        spatial_dims=dims,
    )
    for refiner in g.refiners:  # untrained refiners are pure interpolation: make them non-trivial
        torch.nn.init.normal_(refiner.out.weight, std=0.05)  # type: ignore[union-attr]
    return g.eval()


@pytest.mark.parametrize(
    ("dims", "size", "levels"), [(2, (128, 96), 2), (3, (32, 48, 16), 2), (3, (64, 48, 32), 1)]
)
@pytest.mark.parametrize("cond", [0, 1])
def test_tiled_pipeline_equals_the_whole_image_pass(
    dims: int, size: tuple[int, ...], levels: int, cond: int
) -> None:
    """Every level, level 0 included, is tiled (16-voxel tiles) and matches one whole pass."""
    g = _random_generator(dims, cond, levels)
    condition = None
    if cond:
        condition = np.random.default_rng(2).random((1, *size)).astype(np.float32) * 2 - 1
    whole = synthesize(
        g,
        size,
        noise=torch.Generator().manual_seed(3),
        condition=condition,
        settings=TileSettings(tile=1024),
    )
    tiled = synthesize(
        g,
        size,
        noise=torch.Generator().manual_seed(3),
        condition=condition,
        settings=TileSettings(tile=16, overlap=4, batch=3, ramp="cosine"),
    )
    assert whole.shape == (1, *size)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
    if cond:  # the condition drives the output
        other = synthesize(
            g,
            size,
            noise=torch.Generator().manual_seed(3),
            condition=-condition,
            settings=TileSettings(tile=16, overlap=4),
        )
        assert np.abs(other - whole).mean() > 1e-3


def test_too_small_a_margin_shows_and_the_seam_metric_sees_it() -> None:
    g = _random_generator(3)
    size = (32, 32, 32)
    whole = synthesize(
        g, size, noise=torch.Generator().manual_seed(3), settings=TileSettings(tile=1024)
    )
    naive = synthesize(
        g,
        size,
        noise=torch.Generator().manual_seed(3),
        settings=TileSettings(tile=16, overlap=0, margin=0, ramp="none"),
    )
    assert np.abs(naive - whole).max() > 1e-3


def test_pipeline_refuses_bad_sizes_and_conditions() -> None:
    g = _random_generator(2)
    with pytest.raises(ConfigError, match="multiple of 16"):
        synthesize(g, (40, 48))
    with pytest.raises(ConfigError, match="unconditional"):
        synthesize(g, (32, 32), condition=np.zeros((1, 32, 32), np.float32))
    with pytest.raises(ConfigError, match="conditional"):
        synthesize(_random_generator(2, cond=1), (32, 32))
    with pytest.raises(ConfigError, match="cannot be refined"):
        synthesize(g, (32, 32), start=np.zeros((1, 10, 10), np.float32))


def _rss_file_mib() -> float:
    """Resident file-backed pages (on disk or tmpfs) of this process, MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    if "RssFile" not in fields:
        pytest.skip("no RssFile in /proc/self/status (not Linux)")
    return sum(int(fields.get(k, "0 kB").split()[0]) for k in ("RssFile", "RssShmem")) / 1024


def test_release_pages_drops_touched_memmap_pages_but_keeps_the_data(tmp_path: Path) -> None:
    with Scratch(tmp_path) as scratch:
        array = scratch.zeros((4, 128, 64, 64))  # 16 MiB
        before = _rss_file_mib()
        array[:] = 1.5
        array[2, 3] += 1.0
        touched = _rss_file_mib()
        assert touched - before > 4  # pages written are resident (the kernel may evict some)
        assert release_pages(array[1:])  # a view finds its memmap
        assert touched - _rss_file_mib() > 0.9 * (touched - before)
        assert float(array[2, 3, 5, 7]) == 2.5 and float(array.sum()) == 1.5 * array.size + 4096
    assert not release_pages(np.zeros(4))


def test_downsample_array_in_slabs_matches_block_means() -> None:
    x = np.random.default_rng(0).random((2, 136, 8, 4)).astype(np.float32)
    expected = x.reshape(2, 34, 4, 2, 4, 1, 4).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(downsample_array(x, 4), expected, rtol=1e-5)
