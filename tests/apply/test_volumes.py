"""Images of any size from a model that samples in tiles: memmaps beside the target, streamed
NIfTI output, whole-volume super-resolution, conditional translation, labelled sets."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medisynth.apply.volumes import enhance_volume, generate_volume, write_nifti_streamed
from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo
from medisynth.gans.multiscale import MultiScaleConfig, MultiScaleGAN
from medisynth.gans.multiscale_tiling import Scratch, TileSettings, run_tiled, synthesize
from medisynth.nets.multiscale import upsample2


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


def test_generate_with_size_writes_a_labelled_set_of_large_volumes(tmp_path: Path) -> None:
    import json

    from medisynth.apply.generate import generate
    from medisynth.config import RunConfig
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
