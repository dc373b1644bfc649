"""medisynth translate: volumes slice by slice with their geometry, PNGs, folders, clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from skimage.exposure import match_histograms

from medisynth.apply.translate import translate, translate_array, translate_ensemble
from medisynth.cli import main
from medisynth.config import RunConfig, load_config
from medisynth.data.formats import load_training_data
from medisynth.data.intensity import IntensityMap
from medisynth.errors import MedisynthError
from medisynth.export.nifti import write_nifti
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo
from medisynth.package import load_package, save_package

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TINY = {"family": "pix2pix", "g_channels": 4, "g_depth": 2, "d_channels": 4, "d_layers": 2}
SOURCE_MAP = IntensityMap(0.0, 100.0, kind="window", modality="MR")
TARGET_MAP = IntensityMap(1000.0, 3000.0, kind="percentile", modality="MR")


def make_package(
    folder: Path,
    shape: tuple[int, ...] = (16, 16),
    axis: int = 2,
    dtype: str = "float32",
    source_map: IntensityMap = SOURCE_MAP,
) -> Path:
    """An untrained but fixed pix2pix package (random weights, seeded)."""
    torch.manual_seed(0)
    cfg = RunConfig.from_dict({"model": TINY, "data": {"format": "paired", "axis": axis}})
    data = DataInfo(
        channels=1,
        spatial_shape=shape,
        intensity_map=TARGET_MAP,
        source_intensity_map=source_map,
        source_channels=1,
        source_dtype=dtype,
    )
    family = get_family("pix2pix").build(cfg.model, data, training=False)
    return save_package(folder, family, cfg)


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    array = (rng.random((1, 16, 12, 5)) * 100).astype(np.float32)
    affine = np.array([[0, -0.9, 0, 20], [1.1, 0, 0, -7], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    path = tmp_path / "t1.nii.gz"
    write_nifti(path, array, affine=affine)
    return path, array, affine


def test_volume_in_volume_out_in_target_units(tmp_path: Path, volume: tuple) -> None:
    path, array, affine = volume
    model = make_package(tmp_path / "model")
    result = translate(model, path, tmp_path / "t2.nii.gz")
    out = nib.load(tmp_path / "t2.nii.gz")
    assert out.shape == (16, 12, 5) and np.allclose(out.affine, affine)
    values = np.asarray(out.dataobj)
    assert values.min() >= 1000 - 1e-3 and values.max() <= 3000 + 1e-3  # target units
    assert values.std() > 0
    assert result.slices == 5 and result.outputs == [str(tmp_path / "t2.nii.gz")]
    # slice by slice: slice k of the output depends on slice k of the input only
    package = load_package(model)
    changed = array.copy()
    changed[..., 3] = 0
    again = translate_array(package, changed)
    assert np.allclose(again[..., :3], values[None, ..., :3], atol=1e-3)
    assert not np.allclose(again[..., 3], values[..., 3])
    # the same as by hand: scale, resize to the model's 16 x 16, translate, resize back, unscale
    first = torch.from_numpy(SOURCE_MAP.forward(array[..., 0]))[None]
    small = torch.nn.functional.interpolate(first, size=(16, 16), mode="bilinear")
    by_hand = package.family.translate(small)  # type: ignore[attr-defined]
    back = torch.nn.functional.interpolate(by_hand, size=(16, 12), mode="bilinear", antialias=True)
    expected = TARGET_MAP.inverse(back.clamp(-1, 1).numpy()[0, 0])
    assert np.allclose(values[..., 0], expected, atol=0.5)


def test_png_in_png_out_and_folders(tmp_path: Path) -> None:
    model = make_package(tmp_path / "model", dtype="uint8")
    inputs = tmp_path / "in"
    inputs.mkdir()
    pixels = (np.random.default_rng(1).random((20, 24)) * 100).astype(np.uint8)
    PILImage.fromarray(pixels).save(inputs / "a.png")
    PILImage.fromarray(pixels[:16, :16]).save(inputs / "b.png")
    translate(model, inputs / "a.png", tmp_path / "a_out.png")
    assert PILImage.open(tmp_path / "a_out.png").size == (24, 20)
    result = translate(model, inputs, tmp_path / "out")
    assert sorted(Path(p).name for p in result.outputs) == ["a.png", "b.png"]
    assert np.asarray(PILImage.open(tmp_path / "out" / "b.png")).shape == (16, 16)


def test_wrong_inputs_give_clear_errors(tmp_path: Path, volume: tuple) -> None:
    path, _, _ = volume
    model_2d = make_package(tmp_path / "m2")
    model_3d = make_package(tmp_path / "m3", shape=(8, 8, 8))
    png = tmp_path / "x.png"
    PILImage.fromarray(np.zeros((16, 16), np.uint8)).save(png)
    rgb = tmp_path / "rgb.png"
    PILImage.fromarray(np.zeros((16, 16, 3), np.uint8)).save(rgb)
    with pytest.raises(MedisynthError, match="3D model; it translates volumes"):
        translate(model_3d, png, tmp_path / "y.png")
    with pytest.raises(MedisynthError, match=r"1 channel\(s\)"):
        translate(model_2d, rgb, tmp_path / "y.png")
    with pytest.raises(MedisynthError, match="cannot be written as PNG"):
        translate(model_2d, path, tmp_path / "y.png")
    with pytest.raises(MedisynthError, match="trained on MR"):
        translate(model_2d, png, tmp_path / "y.png", modality="CT")
    (tmp_path / "exists.nii.gz").write_bytes(b"user data")
    with pytest.raises(MedisynthError, match="exists"):
        translate(model_2d, path, tmp_path / "exists.nii.gz")
    assert (tmp_path / "exists.nii.gz").read_bytes() == b"user data"
    dcgan_cfg = RunConfig.from_dict({"model": {"g_channels": 4, "latent_dim": 4}})
    dcgan = get_family("dcgan").build(dcgan_cfg.model, DataInfo(1, (16, 16)), training=False)
    save_package(tmp_path / "dcgan", dcgan, dcgan_cfg)
    with pytest.raises(MedisynthError, match="dcgan model; translate needs"):
        translate(tmp_path / "dcgan", png, tmp_path / "y.png")


def test_3d_model_translates_whole_volumes(tmp_path: Path, volume: tuple) -> None:
    path, _, affine = volume
    model = make_package(tmp_path / "m3", shape=(8, 8, 8))
    translate(model, path, tmp_path / "out.nii.gz")
    out = nib.load(tmp_path / "out.nii.gz")
    assert out.shape == (16, 12, 5) and np.allclose(out.affine, affine)


def test_cli(tmp_path: Path, volume: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    path, _, _ = volume
    model = make_package(tmp_path / "model")
    assert main(["translate", str(model), str(path), "-o", str(tmp_path / "o.nii.gz")]) == 0
    assert "translated 1 file(s)" in capsys.readouterr().out
    assert main(["translate", str(model), str(path), "-o", str(tmp_path / "o.nii.gz")]) == 2
    assert "exists" in capsys.readouterr().err


def test_mr_inputs_are_normalised_by_their_own_percentiles(tmp_path: Path, volume: tuple) -> None:
    """MR has no absolute unit: a scan at 10x the intensity gives the same translation."""
    _, array, _ = volume
    mr_map = IntensityMap.percentile([array], modality="MR")
    package = load_package(make_package(tmp_path / "model", source_map=mr_map))
    once = translate_array(package, array)
    assert np.allclose(translate_array(package, 10 * array), once, atol=1e-2)
    fixed = translate_array(package, 10 * array, source_scaling="model")
    assert not np.allclose(fixed, once, atol=1.0)
    with pytest.raises(MedisynthError, match="auto, model or input"):
        translate_array(package, array, source_scaling="zscore")


def test_a_source_prior_model_starts_at_histogram_matching_and_trains(tmp_path: Path) -> None:
    """data.source_prior: the prior is computed per volume at training and at translation time;
    an untrained generator returns it, so its translation is the matched (inverted) source."""
    from medisynth.data.pairs import load_pair_data

    rng = np.random.default_rng(3)
    brain = np.zeros((16, 16, 6), bool)
    brain[2:14, 3:13] = True
    t1 = np.where(brain, 200 + 600 * rng.random(brain.shape), 0.0).astype(np.float32)[None]
    t2 = np.where(brain, 4000 - 3 * t1[0], 0.0).astype(np.float32)[None]  # inverted contrast
    write_nifti(tmp_path / "t1.nii.gz", t1)
    write_nifti(tmp_path / "t2.nii.gz", t2)
    model = {**TINY, "augment": ["flip", "gamma"]}
    cfg = RunConfig.from_dict(
        {
            "model": model,
            "data": {
                "format": "paired",
                "path": str(tmp_path / "t1.nii.gz"),
                "target_path": str(tmp_path / "t2.nii.gz"),
                "source_prior": "auto",
            },
        }
    )
    dataset, info = load_pair_data(cfg.data)
    assert info.source_prior is not None and info.source_prior.inverted
    item = dataset[0]
    assert sorted(item) == ["prior", "source", "target"]
    inside = item["source"][0] > -1
    # the prior of the inverted pair is nearly the target already
    assert (item["prior"][0][inside] - item["target"][0][inside]).abs().mean() < 0.05
    with pytest.raises(MedisynthError, match="blur and noise change the source but not its prior"):
        get_family("pix2pix").build(cfg.model.model_copy(update={"augment": ["blur"]}), info)
    torch.manual_seed(0)
    family = get_family("pix2pix").build(cfg.model, info)
    batch = {k: torch.stack([dataset[i][k] for i in range(4)]) for k in item}
    losses = [family.train_step(batch)["l1"] for _ in range(3)]
    assert np.isfinite(losses).all()
    with pytest.raises(MedisynthError, match=r"translates \(2, \?, \?\)"):
        family.translate(batch["source"])  # the prior channel is missing
    untrained = get_family("pix2pix").build(cfg.model, info, training=False)
    package = load_package(save_package(tmp_path / "model", untrained, cfg))
    card = (tmp_path / "model" / "model_card.md").read_text()
    assert "Source prior: the inverted source histogram-matched" in card
    out = translate_array(package, t1)
    assert out.shape == t1.shape
    matched = match_histograms(-t1[0][brain], t2[0][brain])
    assert np.corrcoef(out[0][brain], matched)[0, 1] > 0.99
    assert np.abs(out[0][brain] - t2[0][brain]).mean() < 0.05 * np.ptp(t2[0][brain])


def test_the_t1_to_t2_recipe_records_mr_and_refuses_a_ct(
    tmp_path: Path, volume: tuple, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example recipe states its modality, so its model refuses a CT: labelled by the file
    (DICOM Modality) or by --modality; an unlabelled NIfTI goes through."""
    path, _, _ = volume
    overrides = [f"data.path={path}", f"data.target_path={path}", "data.image_size=16"]
    cfg = load_config(EXAMPLES / "brain_t1_to_t2_pix2pix.yaml", overrides)
    _, data = load_training_data(cfg.data)
    family = get_family("pix2pix").build(cfg.model, data, training=False)
    model = save_package(tmp_path / "model", family, cfg)
    ct = shared_data / "pydicom_samples" / "CT_small.dcm"
    assert main(["translate", str(model), str(ct), "-o", str(tmp_path / "ct.png")]) == 2
    assert "CT_small.dcm is CT but the model was trained on MR" in capsys.readouterr().err
    args = ["translate", str(model), str(path), "-o", str(tmp_path / "t2.nii.gz")]
    assert main([*args, "--modality", "CT"]) == 2
    assert "is CT but the model was trained on MR" in capsys.readouterr().err
    assert not (tmp_path / "ct.png").exists() and not (tmp_path / "t2.nii.gz").exists()
    assert main(args) == 0


def test_a_model_without_a_modality_warns_that_inputs_go_unchecked(
    tmp_path: Path, volume: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    path, _, _ = volume
    unlabelled = make_package(tmp_path / "m", source_map=IntensityMap(0.0, 100.0, kind="window"))
    with caplog.at_level(logging.WARNING, logger="medisynth.apply.jobs"):
        translate(unlabelled, path, tmp_path / "a.nii.gz", modality="CT")
        assert "does not record the modality it was trained on" in caplog.text
        caplog.clear()
        translate(make_package(tmp_path / "mr"), path, tmp_path / "b.nii.gz")
        assert "does not record" not in caplog.text


def test_nan_from_the_model_or_in_the_input_is_an_error(
    tmp_path: Path, volume: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    path, array, affine = volume
    model = make_package(tmp_path / "model")
    package = load_package(model)
    generator = package.family.inference_nets()["generator"]
    with torch.no_grad():
        list(generator.parameters())[-1].fill_(float("nan"))
    broken = save_package(tmp_path / "broken", package.family, package.config)
    assert main(["translate", str(broken), str(path), "-o", str(tmp_path / "a.nii.gz")]) == 2
    assert "NaN or infinite values (translation)" in capsys.readouterr().err
    holey = array.copy()
    holey[0, 3, 3, 1] = np.nan
    write_nifti(tmp_path / "holey.nii.gz", holey, affine=affine)
    args = [str(model), str(tmp_path / "holey.nii.gz"), "-o", str(tmp_path / "b.nii.gz")]
    assert main(["translate", *args]) == 2
    assert "holey.nii.gz: the input holds NaN or infinite values" in capsys.readouterr().err
    assert not (tmp_path / "a.nii.gz").exists() and not (tmp_path / "b.nii.gz").exists()


def test_in_brain_normalisation_from_training_to_the_cli_on_a_brats_subject(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """data.normalisation: brain on a BraTS 2015 subject (z-scored, background not 0, brain
    mask given): the model records the in-brain map; ``translate --brain-mask`` normalises the
    input the same way, so a rescaled scan translates identically, and writes 0..1 with 0
    outside the brain. A mask for a model without the normalisation is exit 2."""
    subject = shared_data / "brats2015_flair_t1c" / "brats_2013_pat0002_1"
    if not subject.is_dir():
        pytest.skip(f"{subject} is absent (BraTS 2015 subjects of the shared data)")
    t1c, mask = subject / "T1c_subtrMeanDivStd.nii.gz", subject / "brainmask.nii.gz"
    cfg = RunConfig.from_dict(
        {
            "model": TINY,
            "data": {
                "format": "paired",
                "path": str(t1c),
                "target_path": str(subject / "Flair_subtrMeanDivStd.nii.gz"),
                "modality": "MR",
                "image_size": 32,
                "normalisation": "brain",
                "brain_mask_path": str(mask),
            },
        }
    )
    dataset, info = load_training_data(cfg.data)
    assert info.intensity_map.kind == info.source_intensity_map.kind == "brain"
    assert float(dataset[0]["source"].min()) == -1.0  # the background is 0 -> -1
    torch.manual_seed(0)
    family = get_family("pix2pix").build(cfg.model, info, training=False)
    model = save_package(tmp_path / "model", family, cfg)
    recorded = "".join(p.read_text() for p in (tmp_path / "model").glob("*.*[dl]"))
    assert "normalisation: brain" in recorded and str(subject) not in recorded

    scan = nib.load(t1c)
    rescaled = tmp_path / "rescaled.nii.gz"  # the same scan, other units and background
    nib.save(nib.Nifti1Image(scan.get_fdata() * 300 + 900, scan.affine, scan.header), rescaled)
    outputs = []
    for name, source in (("a", t1c), ("b", rescaled)):
        out = tmp_path / f"{name}.nii.gz"
        args = ["translate", str(model), str(source), "-o", str(out), "--brain-mask", str(mask)]
        assert main(args) == 0, capsys.readouterr().err
        outputs.append(np.asarray(nib.load(out).dataobj))
    brain = np.asarray(nib.load(mask).dataobj) > 0
    assert np.allclose(outputs[0], outputs[1], atol=1e-3)
    assert outputs[0][~brain].max() == 0.0 and 0.0 <= outputs[0].min() <= outputs[0].max() <= 1.0
    assert outputs[0][brain].std() > 0

    plain = make_package(tmp_path / "plain", source_map=IntensityMap.percentile([np.ones(3)]))
    args = ["translate", str(plain), str(t1c), "-o", str(tmp_path / "c.nii.gz")]
    assert main([*args, "--brain-mask", str(mask)]) == 2
    assert "trained with data.normalisation: brain" in capsys.readouterr().err
    with pytest.raises(MedisynthError, match="brain masks need data.normalisation: brain"):
        RunConfig.from_dict({"data": {"format": "paired", "brain_mask_path": str(mask)}})


def test_an_ensemble_is_the_mean_of_its_models_and_refuses_other_tasks(
    tmp_path: Path, volume: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two models (different weights) translate together: the output is the mean of each one's
    translation, through the API and the CLI; a model of other domains is refused."""
    path, array, _ = volume
    first = make_package(tmp_path / "a")
    torch.manual_seed(1)
    second = load_package(make_package(tmp_path / "b"))
    for net in second.family.inference_nets().values():  # other weights than the first's
        for parameter in net.parameters():
            parameter.data.add_(torch.randn_like(parameter) * 0.3)
    alone = [translate_array(load_package(first), array), translate_array(second, array)]
    assert not np.allclose(alone[0], alone[1])
    together = translate_ensemble([first, second], array)
    np.testing.assert_allclose(together, (alone[0] + alone[1]) / 2, rtol=1e-5, atol=1e-3)
    second_dir = tmp_path / "b2"
    save_package(second_dir, second.family, second.config)
    args = ["translate", str(first), str(path), "-o", str(tmp_path / "e.nii.gz")]
    assert main([*args, "--ensemble", str(second_dir)]) == 0
    assert "ensemble of 2" in capsys.readouterr().out
    written = np.asarray(nib.load(tmp_path / "e.nii.gz").dataobj)
    np.testing.assert_allclose(written, together[0], rtol=1e-5, atol=1e-3)
    ct = make_package(tmp_path / "ct", source_map=IntensityMap(-1000.0, 1000.0, kind="window",
                                                              modality="CT"))  # fmt: skip
    args = ["translate", str(first), str(path), "-o", str(tmp_path / "x.nii.gz")]
    assert main([*args, "--ensemble", str(ct)]) == 2
    assert "do not translate between the same domains" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()
