"""Tiled multi-scale inference: blending weights, exactness of tiling, memmaps, NIfTI output,
super-resolution and conditional translation, 2D and 3D."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo
from medisynth.gans.multiscale import MultiScaleConfig, MultiScaleGAN
from medisynth.multiscale_inference import (
    Scratch,
    TileSettings,
    downsample_array,
    enhance_volume,
    generate_volume,
    plan_axis,
    plan_tiles,
    release_pages,
    run_tiled,
    synthesize,
    write_nifti_streamed,
)
from medisynth.nets.multiscale import MultiScaleGenerator, upsample2


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


def _family(dims: int = 3, levels: int = 2, cond: int = 0, side: int = 32) -> MultiScaleGAN:
    torch.manual_seed(0)
    cfg = MultiScaleConfig(
        levels=levels,
        latent_dim=3,
        g0_channels=4,
        g_channels=4,
        d_channels=4,
        res_blocks=1,
        patch_size=16,
        tile=16,
        overlap=4,
        condition_key="source" if cond else None,
        condition_channels=cond,
    )
    data = DataInfo(channels=1, spatial_shape=(side,) * dims, spacing=(0.5,) * dims)
    return MultiScaleGAN.build(cfg, data, training=False)


def test_generate_volume_streams_through_memmaps_beside_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[type, Path]] = []
    original = Scratch.zeros

    orders: list[bool] = []

    def spy(self: Scratch, shape: tuple[int, ...], order: str = "C") -> np.ndarray:
        array = original(self, shape, order)  # type: ignore[arg-type]
        made.append((type(array), self.files[id(array)]))
        orders.append(bool(array.flags.f_contiguous and not array.flags.c_contiguous))
        return array

    monkeypatch.setattr(Scratch, "zeros", spy)
    family = _family()
    target = tmp_path / "out" / "vol.nii.gz"
    result = generate_volume(family, (40, 24, 56), target, seed=5, tile=16, batch=4)
    assert result.shape == (40, 24, 56)
    assert made and all(kind is np.memmap and path.parent == target.parent for kind, path in made)
    assert orders[0]  # the output is Fortran-ordered, as NIfTI is written: slabs are contiguous
    assert sorted(p.name for p in target.parent.iterdir()) == ["vol.nii.gz"]  # temp files gone
    image = nib.load(target)
    assert image.shape == (40, 24, 56)
    assert np.allclose(np.diag(image.affine)[:3], 0.5)
    values = np.asarray(image.dataobj)
    assert values.dtype == np.float32 and values.min() >= -1 and values.max() <= 1
    again = tmp_path / "again.nii"
    generate_volume(family, (40, 24, 56), again, seed=5, tile=64)  # other tiling, same volume
    np.testing.assert_allclose(np.asarray(nib.load(again).dataobj), values, atol=1e-4)


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


def test_generate_volume_2d_in_source_units(tmp_path: Path) -> None:
    from medisynth.data.intensity import IntensityMap

    family = _family(dims=2, levels=1, side=16)
    family.data.intensity_map = IntensityMap.integer_range("uint8")
    family.data.source_dtype = "uint8"
    result = generate_volume(family, 50, tmp_path / "big.nii", tile=16)
    image = nib.load(tmp_path / "big.nii")
    assert result.dtype == "uint8" and image.shape == (50, 50)
    assert image.get_data_dtype() == np.uint8


def test_enhance_volume_is_whole_volume_super_resolution(tmp_path: Path) -> None:
    family = _family(levels=2)
    low = np.random.default_rng(0).random((1, 9, 12, 7)).astype(np.float32) * 2 - 1
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    result = enhance_volume(family, low, tmp_path / "sr.nii.gz", factor=4, affine=affine, tile=16)
    assert result.shape == (36, 48, 28)
    out = nib.load(tmp_path / "sr.nii.gz")
    # voxel centres: fine voxel i sits at coarse coordinate (i + 0.5) / 4 - 0.5
    corner = out.affine @ [0, 0, 0, 1]
    np.testing.assert_allclose(corner[:3], [10 - 0.75, 20 - 0.75, 30 - 1.125])
    np.testing.assert_allclose(np.diag(out.affine)[:3], [0.5, 0.5, 0.75])
    # untrained refiners are interpolation: the result is x2 linear upsampling, twice
    expected = upsample2(upsample2(torch.from_numpy(low)[None]))[0].numpy()
    np.testing.assert_allclose(np.asarray(out.dataobj)[None], np.clip(expected, -1, 1), atol=1e-5)
    with pytest.raises(ConfigError, match="factor"):
        enhance_volume(family, low, tmp_path / "x.nii", factor=8)


def test_enhance_volume_reads_an_image_file(tmp_path: Path) -> None:
    family = _family(levels=1, side=16)
    source = tmp_path / "low.nii.gz"
    nib.save(
        nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), np.diag([3.0, 3.0, 3.0, 1.0])), source
    )
    result = enhance_volume(family, source, tmp_path / "high.nii.gz")
    assert result.shape == (10, 12, 14) and result.spacing == (1.5, 1.5, 1.5)


def test_conditional_translation_of_a_whole_volume(tmp_path: Path) -> None:
    family = _family(cond=1)
    g = family.inference_generator()
    for refiner in g.refiners:
        torch.nn.init.normal_(refiner.out.weight, std=0.05)  # type: ignore[union-attr]
    yy, xx, zz = np.mgrid[:48, :32, :32]
    sketch = (((yy - 24) ** 2 + (xx - 16) ** 2 + (zz - 16) ** 2) < 100).astype(np.float32)[None]
    generate_volume(family, (48, 32, 32), tmp_path / "a.nii", condition=sketch, tile=16)
    generate_volume(family, (48, 32, 32), tmp_path / "b.nii", condition=1 - sketch, tile=16)
    a = np.asarray(nib.load(tmp_path / "a.nii").dataobj)
    b = np.asarray(nib.load(tmp_path / "b.nii").dataobj)
    assert a.shape == (48, 32, 32) and np.abs(a - b).mean() > 1e-3
    whole = synthesize(
        g,
        (48, 32, 32),
        noise=torch.Generator().manual_seed(0),
        condition=sketch,
        settings=TileSettings(tile=1024),
    )
    np.testing.assert_allclose(a, np.clip(whole[0], -1, 1), atol=1e-4)
    with pytest.raises(ConfigError, match="condition grid"):
        generate_volume(family, (48, 32, 32), tmp_path / "c.nii", condition=sketch[:, :40])


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((1, 5, 6, 7), "float32"),
        ((2, 5, 6, 7), "int16"),
        ((1, 9, 4), "uint8"),
        ((3, 4, 5), "float32"),
    ],
)
def test_streamed_nifti_matches_nibabel(tmp_path: Path, shape: tuple[int, ...], dtype: str) -> None:
    from medisynth.export.nifti import write_nifti

    array = (np.random.default_rng(0).random(shape) * 100).astype(np.float32)
    affine = np.diag([0.5, 0.7, 0.9, 1.0])
    write_nifti_streamed(tmp_path / "a.nii.gz", array, affine, dtype)
    write_nifti(tmp_path / "b.nii.gz", array, affine=affine, dtype=dtype)
    a, b = nib.load(tmp_path / "a.nii.gz"), nib.load(tmp_path / "b.nii.gz")
    assert a.shape == b.shape and a.get_data_dtype() == b.get_data_dtype()
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_allclose(a.affine, b.affine)
    assert a.header.get_zooms() == b.header.get_zooms()


def test_streamed_nifti_crops_and_transforms(tmp_path: Path) -> None:
    array = np.arange(2 * 4 * 6, dtype=np.float32).reshape(1, 2, 4, 6)
    write_nifti_streamed(tmp_path / "c.nii", array, crop=(2, 3, 5), transform=lambda s: s * 2)
    np.testing.assert_array_equal(
        np.asarray(nib.load(tmp_path / "c.nii").dataobj), array[0, :, :3, :5] * 2
    )


def test_downsample_array_in_slabs_matches_block_means() -> None:
    x = np.random.default_rng(0).random((2, 136, 8, 4)).astype(np.float32)
    expected = x.reshape(2, 34, 4, 2, 4, 1, 4).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(downsample_array(x, 4), expected, rtol=1e-5)


def test_generate_with_size_writes_a_labelled_set_of_large_volumes(tmp_path: Path) -> None:
    import json

    from medisynth.config import RunConfig
    from medisynth.generate import generate
    from medisynth.package import save_package

    family = _family(levels=1, side=16)
    config = RunConfig.from_dict(
        {
            "model": {
                "family": "multiscale",
                "levels": 1,
                "latent_dim": 3,
                "g0_channels": 4,
                "g_channels": 4,
                "d_channels": 4,
                "res_blocks": 1,
                "patch_size": 16,
                "tile": 16,
                "overlap": 4,
            }
        }
    )
    folder = save_package(tmp_path / "model", family, config)
    result = generate(folder, 2, tmp_path / "out", fmt="nifti", seed=3, size=(40, 24, 16))
    assert result.count == 2 and len(result.files) == 2
    shapes = [nib.load(tmp_path / "out" / name).shape for name in result.files]
    assert shapes == [(40, 24, 16)] * 2
    text = (tmp_path / "out" / "generation.json").read_text()
    record = json.loads(text)
    assert record["size"] == [40, 24, 16] and record["synthetic"] is True
    assert record["status"] == "complete" and str(tmp_path) not in text  # model id, no path
    assert record["model_id"] == json.loads((folder / "model_card.json").read_text())["model_id"]
    assert (tmp_path / "out" / "labels.csv").read_text().count("synthetic_") == 2
    from medisynth.export.provenance import export_generated

    series = export_generated(tmp_path / "out", tmp_path / "dicom", modality="MR")
    assert {p.parent.name for p in series} == {"synthetic_0001", "synthetic_0002"}
    with pytest.raises(ConfigError, match="--format nifti"):
        generate(folder, 1, tmp_path / "png", fmt="png", size=(32, 32, 32))


def test_non_finite_network_output_stops_generation_and_writes_nothing(tmp_path: Path) -> None:
    from medisynth.cli import main
    from medisynth.config import RunConfig
    from medisynth.errors import MedisynthError
    from medisynth.package import save_package

    family = _family(levels=1, side=16)
    sizes = {"latent_dim": 3, "g0_channels": 4, "g_channels": 4, "d_channels": 4, "tile": 16}
    model = {"family": "multiscale", "levels": 1, "res_blocks": 1, "patch_size": 16, **sizes}
    folder = save_package(tmp_path / "model", family, RunConfig.from_dict({"model": model}))
    # the CLI's --precision reaches the tiled networks
    args = ["generate", str(folder), "-n", "1", "--size", "32", "-f", "nifti", "--precision"]
    assert main([*args, "fp32", "-o", str(tmp_path / "fp32")]) == 0
    assert main([*args, "fp8", "-o", str(tmp_path / "fp8")]) == 2
    # a NaN from the network (as bf16 can give on some CPUs) is an error, not a NaN volume
    with pytest.raises(MedisynthError, match="NaN or infinite.*precision"):
        run_tiled(lambda xs: xs[0] * float("nan"), [(np.ones((1, 8, 8), np.float32), 1)],
                  np.zeros((1, 8, 8), np.float32), tile=4, overlap=0, margin=0)  # fmt: skip
    with torch.no_grad():
        next(family.inference_generator().parameters()).fill_(float("nan"))
    target = tmp_path / "nan" / "volume.nii.gz"
    with pytest.raises(MedisynthError, match="not written"):
        generate_volume(family, (32, 32, 32), target, tile=16, precision="fp32")
    assert list(target.parent.iterdir()) == []  # no volume, no scratch files left
