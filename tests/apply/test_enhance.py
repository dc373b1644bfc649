"""medisynth enhance: super-resolved volumes with the right geometry, PNGs, the CLI, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from medisynth.apply.enhance import enhance, enhance_array, upsampled_affine
from medisynth.cli import main
from medisynth.config import RunConfig, load_config
from medisynth.data.formats import load_training_data
from medisynth.data.intensity import IntensityMap
from medisynth.errors import ConfigError
from medisynth.export.nifti import write_nifti
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo
from medisynth.nets.srresnet import upsample
from medisynth.package import load_package, save_package

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

WINDOW = IntensityMap(0.0, 100.0, kind="window", modality="MR")
OBLIQUE = np.array(
    [[0.0, -0.9, 0.1, 20.0], [1.1, 0.0, 0.0, -7.0], [0.0, 0.05, 2.5, 3.0], [0, 0, 0, 1]]
)


def make_package(
    folder: Path,
    scale: int = 2,
    shape: tuple[int, ...] = (16, 16),
    axis: int = 2,
    family: str = "srgan",
    intensity: IntensityMap = WINDOW,
) -> Path:
    """An untrained srgan package: its output is exactly the interpolation of the input."""
    torch.manual_seed(0)
    settings = {"g_channels": 4, "d_channels": 4, "d_layers": 1}
    settings.update({"scale": scale, "n_blocks": 1} if family == "srgan" else {"g_depth": 2})
    data_format = "medmnist" if family == "srgan" else "paired"  # what the family trains on
    cfg = RunConfig.from_dict(
        {"model": {"family": family, **settings}, "data": {"axis": axis, "format": data_format}}
    )
    data = DataInfo(channels=1, spatial_shape=shape, intensity_map=intensity, source_dtype="uint8")
    if family != "srgan":
        data.source_intensity_map, data.source_channels = intensity, 1
    built = get_family(family).build(cfg.model, data, training=False)
    return save_package(folder, built, cfg)


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    array = (rng.random((1, 10, 12, 5)) * 80 + 10).astype(np.float32)
    path = tmp_path / "t1.nii.gz"
    write_nifti(path, array, affine=OBLIQUE)
    return path, array


@pytest.mark.parametrize("scale", [2, 4])
def test_geometry_keeps_the_field_of_view(tmp_path: Path, volume: tuple, scale: int) -> None:
    path, array = volume
    model = make_package(tmp_path / "model", scale=scale)
    out_path = tmp_path / "t1_sr.nii.gz"
    enhance(model, path, out_path)
    src, out = nib.load(path), nib.load(out_path)
    assert out.shape == (10 * scale, 12 * scale, 5)  # axial slices: x and y upsampled
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(src.affine)  # orientation kept
    zooms = np.array(src.header.get_zooms())
    assert np.allclose(out.header.get_zooms(), zooms / [scale, scale, 1], atol=1e-5)
    assert np.allclose(out.affine, upsampled_affine(src.affine, scale, (0, 1)), atol=1e-5)
    # nibabel's voxel-centre world coordinates: each old voxel's centre is the mean of the
    # centres of the scale x scale new voxels it was split into ...
    old_ijk = np.stack(np.meshgrid(range(10), range(12), range(5), indexing="ij"), -1)
    old_centres = nib.affines.apply_affine(src.affine, old_ijk)
    new_ijk = np.stack(
        np.meshgrid(range(10 * scale), range(12 * scale), range(5), indexing="ij"), -1
    )
    new_centres = nib.affines.apply_affine(out.affine, new_ijk)
    pooled = new_centres.reshape(10, scale, 12, scale, 5, 3).mean(axis=(1, 3))
    assert np.allclose(pooled, old_centres, atol=1e-4)
    # ... and the outer corner of the field of view (index -1/2) has not moved
    corner_old = nib.affines.apply_affine(src.affine, [-0.5, -0.5, 0])
    corner_new = nib.affines.apply_affine(out.affine, [-0.5, -0.5, 0])
    assert np.allclose(corner_old, corner_new, atol=1e-5)
    # an untrained model returns the bicubic interpolation of each slice, in source units
    values = np.asarray(out.dataobj)
    for z in (0, 4):
        expected = upsample(torch.from_numpy(array[None, ..., z]), scale)[0, 0].numpy()
        assert np.allclose(values[..., z], np.clip(expected, array.min(), array.max()), atol=1e-3)


def test_3d_model_upsamples_every_axis(tmp_path: Path, volume: tuple) -> None:
    path, array = volume
    model = make_package(tmp_path / "model", shape=(8, 8, 8))
    package = load_package(model)
    out = enhance_array(package, array)
    assert out.shape == (1, 20, 24, 10)
    enhance(package, path, tmp_path / "sr.nii.gz")
    affine = nib.load(tmp_path / "sr.nii.gz").affine
    assert np.allclose(affine, upsampled_affine(OBLIQUE, 2, (0, 1, 2)), atol=1e-5)
    with pytest.raises(ConfigError, match="3D model; it enhances volumes"):
        enhance_array(package, array[..., 0])


def test_cli_end_to_end_on_nifti_and_png(tmp_path: Path, volume: tuple) -> None:
    path, _ = volume
    model = make_package(tmp_path / "model", scale=4)
    out = tmp_path / "t1_x4.nii.gz"
    assert main(["enhance", str(model), str(path), "-o", str(out)]) == 0
    assert nib.load(out).shape == (40, 48, 5)
    before = out.read_bytes()
    assert main(["enhance", str(model), str(path), "-o", str(out)]) == 2  # never overwrites
    assert out.read_bytes() == before
    assert main(["enhance", str(model), str(path), "-o", str(out), "--overwrite"]) == 0
    assert main(["enhance", str(model), str(path), "-o", str(path), "--overwrite"]) == 2
    # a folder of PNGs in, a folder of 4x larger PNGs out
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    PILImage.fromarray((rng.random((6, 7)) * 100).astype(np.uint8)).save(folder / "a.png")
    assert main(["enhance", str(model), str(folder), "-o", str(tmp_path / "big")]) == 0
    with PILImage.open(tmp_path / "big" / "a.png") as big:
        assert big.size == (28, 24)


def test_errors_are_one_line_messages(
    tmp_path: Path, volume: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = volume
    sr_model = make_package(tmp_path / "sr")
    translation_model = make_package(tmp_path / "p2p", family="pix2pix")
    assert main(["enhance", str(translation_model), str(path), "-o", str(tmp_path / "a.nii")]) == 2
    assert "enhance needs a super-resolution model" in capsys.readouterr().err
    assert main(["translate", str(sr_model), str(path), "-o", str(tmp_path / "b.nii")]) == 2
    assert "use `medisynth enhance" in capsys.readouterr().err
    assert main(["enhance", str(sr_model), str(tmp_path / "none.nii"), "-o", "x.nii"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and len(err.strip().splitlines()) == 1
    assert main(["enhance", str(sr_model), str(path), "-o", str(tmp_path / "c.jpg")]) == 2
    assert "unknown output format" in capsys.readouterr().err
    assert main(["enhance", str(sr_model), str(path), "-o", str(tmp_path / "d.png")]) == 2
    assert "cannot be written as PNG" in capsys.readouterr().err


def test_real_mr_volume_keeps_its_world_geometry(tmp_path: Path, shared_data: Path) -> None:
    """nibabel's sample anatomical MR (33 x 41 x 25, odd sides, flipped x axis)."""
    path = shared_data / "nibabel_samples" / "anatomical.nii"
    percentiles = IntensityMap(0.0, 1.0, kind="percentile", modality="MR")  # refitted per input
    model = make_package(tmp_path / "model", scale=2, intensity=percentiles)
    assert main(["enhance", str(model), str(path), "-o", str(tmp_path / "sr.nii.gz")]) == 0
    src, out = nib.load(path), nib.load(tmp_path / "sr.nii.gz")
    assert out.shape == (66, 82, 25)
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(src.affine)
    for ijk in ([-0.5, -0.5, 0], [32.5, 40.5, 24]):  # both outer corners of the field of view
        new_ijk = [ijk[0] * 2 + 0.5, ijk[1] * 2 + 0.5, ijk[2]]
        assert np.allclose(
            nib.affines.apply_affine(src.affine, ijk),
            nib.affines.apply_affine(out.affine, new_ijk),
        )
    inside = np.asarray(src.dataobj, np.float32)
    values = np.asarray(out.dataobj)
    assert values.max() <= inside.max() + 1e-3 and values.min() >= inside.min() - 1e-3
    assert abs(values.mean() - inside.mean()) < 0.1 * inside.std()  # the input's units


def test_dicom_series_in_nifti_out(tmp_path: Path, shared_data: Path) -> None:
    """A real MR DICOM series (3 slices of 512 x 512, oblique-free but axes permuted)."""
    from medisynth.data.io import read_image

    series = shared_data / "niivue_volumes" / "dicom_series"
    source = read_image(series)
    assert source.spatial_shape == (3, 512, 512)  # slices along array axis 0
    model = make_package(tmp_path / "model", scale=2)
    out = tmp_path / "series_x2.nii.gz"
    assert main(["enhance", str(model), str(series), "-o", str(out), "--axis", "0"]) == 0
    image = nib.load(out)
    assert image.shape == (3, 1024, 1024)
    assert np.allclose(image.affine, upsampled_affine(source.affine, 2, (1, 2)), atol=1e-4)
    assert np.allclose(image.header.get_zooms(), (1.5, 0.41015625 / 2, 0.41015625 / 2))
    for ijk in ([0, -0.5, -0.5], [2, 511.5, 511.5]):  # in-plane corners of the field of view
        new_ijk = [ijk[0], ijk[1] * 2 + 0.5, ijk[2] * 2 + 0.5]
        assert np.allclose(
            source.world_coordinates(ijk), nib.affines.apply_affine(image.affine, new_ijk)
        )


def test_intensities_outside_the_window_are_not_cut_off(tmp_path: Path) -> None:
    """Window 0..100, input up to 250: the generator sees the clipped input, but the output
    keeps the bright voxels (interpolated), within the input's own range."""
    rng = np.random.default_rng(2)
    array = (rng.random((1, 8, 8)) * 250).astype(np.float32)
    package = load_package(make_package(tmp_path / "model"))
    out = enhance_array(package, array)
    expected = upsample(torch.from_numpy(array[None]), 2)[0].numpy()
    assert out.max() > 200
    assert np.allclose(out, np.clip(expected, array.min(), array.max()), atol=1e-3)


def test_the_brain_sr_recipe_records_mr_and_refuses_a_ct(
    tmp_path: Path, volume: tuple, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = volume
    overrides = [f"data.path={path}", "data.min_foreground=0", "model.patch_size=null"]
    cfg = load_config(EXAMPLES / "brain_sr_x2.yaml", overrides)
    _, data = load_training_data(cfg.data)
    family = get_family("srgan").build(cfg.model, data, training=False)
    model = save_package(tmp_path / "model", family, cfg)
    ct = shared_data / "pydicom_samples" / "CT_small.dcm"
    assert main(["enhance", str(model), str(ct), "-o", str(tmp_path / "ct.png")]) == 2
    assert "CT_small.dcm is CT but the model was trained on MR" in capsys.readouterr().err
    args = ["enhance", str(model), str(path), "-o", str(tmp_path / "big.nii.gz")]
    assert main([*args, "--modality", "CT"]) == 2
    assert not (tmp_path / "ct.png").exists() and not (tmp_path / "big.nii.gz").exists()
    assert main(args) == 0


def test_a_model_without_a_modality_warns_that_inputs_go_unchecked(
    tmp_path: Path, volume: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = volume
    unlabelled = make_package(tmp_path / "m", intensity=IntensityMap(0.0, 100.0, kind="window"))
    with caplog.at_level(logging.WARNING, logger="medisynth.apply.jobs"):
        enhance(unlabelled, path, tmp_path / "a.nii.gz", modality="CT")
        assert "does not record the modality it was trained on" in caplog.text
        caplog.clear()
        enhance(make_package(tmp_path / "mr"), path, tmp_path / "b.nii.gz")
        assert "does not record" not in caplog.text
