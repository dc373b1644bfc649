"""The benchmark scripts run end to end (tiny sizes; the figures themselves are not checked)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_train_throughput_and_loss_curves(tmp_path: Path, tiny_npz: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bench = load("train_throughput")
    monkeypatch.setattr(bench, "find_breastmnist", lambda: tiny_npz)
    args = ["--size", "64", "--batch-size", "4", "--steps", "1", "--repeats", "1"]
    assert bench.main([*args, "--warmup", "0", "--loss-curves", "4", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "train_throughput.json").read_text())
    assert result["ours_images_per_second"] > 0 and result["reference_images_per_second"] > 0
    assert result["ratio"] > 0
    with open(tmp_path / "loss_curves.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and "fp32_d_loss" in rows[0]
    assert "fp32_g_loss" in rows[0]


def test_ada_pipeline_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("ada_pipeline")
    assert bench.main(["--size", "8", "--batch-size", "4", "--p", "0.5", "--calls", "1"]) == 0
    assert "p = 0.5: chosen images only" in capsys.readouterr().out


def test_train_throughput_of_the_style_family(tmp_path: Path) -> None:
    import torch

    bench = load("train_throughput")
    args = ["--family", "style", "--size", "16", "--batch-size", "4", "--threads", "1"]
    args += ["--channel-base", "64", "--channel-max", "8", "--steps", "1", "--repeats", "1"]
    threads = torch.get_num_threads()
    try:
        assert bench.main([*args, "--warmup", "0", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "train_throughput.json").read_text())
    assert result["family"] == "style" and result["batch_size"] == 4 and result["threads"] == 1
    assert result["channel_base"] == 64 and result["channel_max"] == 8
    assert result["ours_images_per_second"] > 0 and result["reference_images_per_second"] > 0


def test_breastmnist_diversity_on_a_small_model(tmp_path: Path, tiny_run) -> None:  # type: ignore[no-untyped-def]
    from medisynth.training.engine import Trainer

    config = tiny_run(steps=2)
    result = Trainer(config).fit()
    diversity = load("breastmnist_diversity")
    data = Path(config.data.path or "")
    assert diversity.main([result.package, "--data", str(data), "--out", str(tmp_path / "d")]) == 0
    figures = json.loads((tmp_path / "d" / "diversity.json").read_text())
    assert figures["real_median_nn_l2"] > 0 and figures["n_synthetic"] == 48
    assert (tmp_path / "d" / "grid_synthetic_disc.png").is_file()


def test_drive_mask2image_on_a_tiny_drive_like_folder(tmp_path: Path) -> None:
    """The DRIVE mask -> image benchmark end to end on 48-pixel stand-ins of the DRIVE layout."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    fov = (np.hypot(yy - 24, xx - 24) < 22).astype(np.uint8) * 255
    for split, tag, cases in (("training", "training", (21, 22)), ("testing", "test", (1, 2))):
        for sub in ("images", "mask", "1st_manual"):
            (tmp_path / "drive" / split / sub).mkdir(parents=True)
        for case in cases:
            vessel = np.zeros((48, 48), np.uint8)
            vessel[:, rng.integers(8, 40)] = 255
            vessel[rng.integers(8, 40), :] = 255
            vessel &= fov
            green = np.where(vessel > 0, 60, 150) * (fov > 0) + rng.normal(0, 5, (48, 48))
            rgb = np.stack([green + 40, green, green / 2], -1).clip(0, 255).astype(np.uint8)
            folder = tmp_path / "drive" / split
            Image.fromarray(rgb).save(folder / "images" / f"{case:02d}_{tag}.tif")
            Image.fromarray(fov).save(folder / "mask" / f"{case:02d}_{tag}_mask.gif")
            Image.fromarray(vessel).save(folder / "1st_manual" / f"{case:02d}_manual1.gif")
    bench = load("drive_mask2image")
    tiny = ["model.g_channels=4", "model.g_depth=2", "model.d_channels=4", "model.d_layers=2"]
    tiny += ["data.patch_size=16", "train.batch_size=2", "model.noise_cell=4"]
    args = ["--data", str(tmp_path / "drive"), "--work", str(tmp_path / "work"), "--steps", "2"]
    args += ["--n-synthetic", "3", "--epochs", "1", "--patch", "32", "--patches-per-image", "2"]
    args += [item for setting in tiny for item in ("--set", setting)]
    args += ["--classic", "orientations"]
    assert bench.main([*args, "--json", str(tmp_path / "result.json")]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["gan"]["steps"] == 2 and result["n_synthetic"] == 3
    assert set(result["conditions"]) == set(bench.CONDITIONS)
    assert all(0 <= c["dice_fov"]["mean"] <= 1 for c in result["conditions"].values())
    classic = result["conditions"]["real+classic"]["augmentation"]
    assert classic[0].startswith("RandFlip") and classic[2].startswith("RandRotate90")
    assert result["classic"] == "orientations" and not any("RandAffine" in n for n in classic)
    assert result["conditions"]["real+synthetic"]["augmentation"] is None
    assert result["gan_over_classic"]["verdict"].count("classic augmentation") == 1
    # half the training images: the GAN, its label maps and the real pairs are that one image
    args = [a for a in args if a not in ("--n-synthetic", "3")]
    half = ["--fraction", "0.5", "--conditions", "real", "--json", str(tmp_path / "half.json")]
    assert bench.main([*args, *half]) == 0
    result = json.loads((tmp_path / "half.json").read_text())
    kept = sorted(p.name for p in (tmp_path / "work" / "subset" / "images").iterdir())
    assert len(result["subset"]) == 1 and kept == [f"{21 + result['subset'][0]:02d}_training.tif"]
    assert result["n_synthetic"] == 2 and result["conditions"]["real"]["n_train_patches"] == 2
    labels = sorted((tmp_path / "work" / "labels").glob("*.png"))
    assert [p.name for p in labels] == ["21_labels.png", "22_labels.png"]
    assert set(np.unique(np.asarray(Image.open(labels[0]))).tolist()) == {0, 1, 2}


def test_translation_benchmark_finds_a_known_z_offset() -> None:
    """Two 'contrasts' of one synthetic head, the second inverted and moved by 2 slices."""
    import numpy as np
    from scipy import ndimage

    bench = load("brain_translation")
    rng = np.random.default_rng(0)
    xx, yy, zz = np.mgrid[:32, :32, :24]
    head = ((xx - 16) ** 2 + (yy - 16) ** 2 + (zz - 12) ** 2 < 100).astype(np.float32)
    tissue = ndimage.gaussian_filter(rng.random(head.shape).astype(np.float32), 1.5)
    source = (1 + tissue) * head
    other = (3 - tissue) * head  # another contrast: the tissue intensities inverted
    moved = bench.shifted(other, 2)
    assert bench.z_offset(source, moved) == -2
    assert bench.z_offset(source, other) == 0
    assert np.array_equal(bench.shifted(moved, -2)[..., :-2], other[..., :-2])


def test_brain_volumes_are_centred_on_their_brain_without_cutting_it() -> None:
    import numpy as np

    bench = load("brain_t1_volumes")
    volume = np.zeros((30, 20, 10), np.float32)
    volume[20:28, 2:8, 1:5] = 1.0  # an off-centre "brain", 8 x 6 x 4
    mask = bench.brain_mask(volume, "nonzero", None)
    grid = bench.to_grid(volume, mask, (12, 10, 8))
    assert grid.shape == (12, 10, 8) and grid.sum() == volume.sum()  # nothing cut off
    where = np.argwhere(grid > 0)
    centre = (where.min(0) + where.max(0) + 1) / 2
    np.testing.assert_allclose(centre, (6, 5, 4))
    assert bench.to_grid(volume, mask, (4, 4, 4)).sum() == 4**3  # a smaller grid crops it


@pytest.mark.slow
def test_brain_volumes_of_the_shared_data(shared_data: Path, tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    bench = load("brain_t1_volumes")
    bench.DATA = shared_data
    bench.SOURCES = tuple(s for s in bench.SOURCES if s[0] in ("tcga_t1", "mni152_t1"))
    bench.main(["--out", str(tmp_path)])
    report = json.loads((tmp_path / "volumes.json").read_text())
    assert [r["brain_voxels_cut_off"] for r in report] == [0, 0]
    for name in ("tcga_t1", "mni152_t1"):
        img = nib.load(tmp_path / f"{name}.nii.gz")
        data = np.asarray(img.dataobj)
        assert data.shape == (160, 192, 160) and img.header.get_zooms() == (1.0, 1.0, 1.0)
        assert data.min() == 0.0 and data.max() == 1.0 and 0.15 < (data > 0).mean() < 0.45


def test_gpu_smoke_runs_every_family_on_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The GPU readiness script takes the same path on a CPU (tiny, 2 steps): every registered
    family trains, applies its package and is reported."""
    from medisynth.gans import FAMILIES

    smoke = load("gpu_smoke")
    out = tmp_path / "smoke.json"
    assert smoke.main(["--device", "cpu", "--steps", "2", "--tiny", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["families"]) == set(FAMILIES)
    for name, figures in result["families"].items():
        assert figures["ok"], (name, figures)
        assert figures["steps"] == 2 and figures["device"] == "cpu"
        assert figures["train_images_per_second"] > 0 and figures["apply_images_per_second"] > 0
    printed = capsys.readouterr().out
    assert f"{len(FAMILIES)} passed, 0 failed" in printed
    assert all(f"\n{name} " in printed for name in FAMILIES)


def test_gpu_smoke_skips_without_cuda_and_fails_a_family_it_does_not_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    smoke = load("gpu_smoke")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert smoke.main(["--json", str(tmp_path / "s.json")]) == 0
    assert "skipped: no CUDA" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text()) == {"skipped": "no CUDA"}
    monkeypatch.delitem(smoke.SPECS, "srgan")
    assert smoke.main(["--device", "cpu", "--families", "srgan"]) == 1
    assert "FAILED: KeyError: \"no smoke settings for the registered family 'srgan'" in (
        capsys.readouterr().out
    )


def test_demo_pixel_prdc_scores_perturbed_real_slices(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("demo_pixel_prdc").main(["--size", "16"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"midpoints", "blur 1.0", "noise 0.05", "shift 1"} <= set(results)
    # the slice manifold itself is inside the real balls; a moved copy is not
    assert results["midpoints"]["precision"] > results["shift 2"]["precision"]


def test_translation_folds_leave_the_test_and_selection_subjects_out() -> None:
    bench = load("brain_translation")
    for task in bench.TASKS:
        folds = bench.folds(task)
        tests = [test for test, _, _ in folds]
        assert len(set(tests)) == len(tests) >= (3 if task == "t1-t2" else 4)
        for test, select, train in folds:
            assert test not in train and select not in train and test != select
            assert len(train) == (2 if task == "t1-t2" else 6)
            assert (select is None) == (task == "t1-t2")


def test_translation_scores_are_perfect_for_the_target_itself(shared_data: Path) -> None:
    bench = load("brain_translation")
    if not bench.contrast_path("pat0003", "flair").exists():
        pytest.skip("the BraTS 2015 subjects of the shared data are absent")
    target = bench.normalised("pat0003", "t1c-flair", "target")
    perfect = bench.score(target, "pat0003", "t1c-flair")
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["mae"] == 0.0
    assert perfect["tumour_ssim"] == pytest.approx(1.0) and perfect["slices"] > 50
    identity = bench.score(
        bench.normalised("pat0003", "t1c-flair", "source"), "pat0003", "t1c-flair"
    )
    assert identity["ssim"] < 0.6 and identity["mae"] > 0.05
