"""End-to-end validation runs on tiny sets: verdicts, report.json keys, report.html, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from medisynth.cli import main
from medisynth.errors import ConfigError
from medisynth.validate import keys as K
from medisynth.validate.protocol import ValidateOptions, validate

RNG = np.random.default_rng(0)
FAST = dict(extractor="pixels", progress=False, kid_subsets=5, kid_subset_size=20)


def _distribution(n: int, size: int = 12) -> np.ndarray:
    centres = np.random.default_rng(42).random((8, size, size))
    images = centres[RNG.integers(0, 8, n)] + RNG.normal(0, 0.15, (n, size, size))
    return (np.clip(images, 0, 1) * 255).astype(np.uint8)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """A MedMNIST-like real file (train/val/test) with a duplicate test image, and fakes."""
    train, val, test = _distribution(120), _distribution(40), _distribution(60)
    test[7] = train[11]  # a real-vs-real duplicate
    labels = lambda x: (x.reshape(len(x), -1).mean(1) > 127).astype(np.int64)[:, None]  # noqa: E731
    arrays = {"train": train, "val": val, "test": test}
    np.savez(
        tmp_path / "real.npz",
        **{f"{k}_images": v for k, v in arrays.items()},
        **{f"{k}_labels": labels(v) for k, v in arrays.items()},
    )
    good = _distribution(80)
    np.savez(tmp_path / "good.npz", train_images=good, train_labels=labels(good))
    collapsed = np.repeat(good[:2], 40, axis=0)
    np.savez(tmp_path / "collapsed.npz", train_images=collapsed, train_labels=labels(collapsed))
    copies = train[:80]
    np.savez(tmp_path / "copies.npz", train_images=copies, train_labels=labels(copies))
    return tmp_path


def _run(data: Path, synthetic: str, **options: object) -> dict:
    return validate(
        f"{data}/real.npz:test", f"{data}/{synthetic}.npz", data / f"out-{synthetic}",
        ValidateOptions(**{**FAST, **options}),  # type: ignore[arg-type]
        train=f"{data}/real.npz:train", heldout=f"{data}/real.npz:val",
    )  # fmt: skip


def test_good_synthetic_set(data: Path) -> None:
    report = _run(data, "good")
    metrics = report[K.METRICS]
    assert set(metrics) == {K.FID, K.KID, K.PRDC, K.DIVERSITY, K.MEMORIZATION}
    assert metrics[K.DIVERSITY][K.VERDICT] == "ok"
    assert metrics[K.MEMORIZATION][K.VERDICT] == "ok"
    relative = metrics[K.FID][K.RELATIVE_FD]
    assert relative[K.VALUE] == pytest.approx(
        relative[K.FD_SYNTHETIC_TRAIN] / relative[K.FD_HELDOUT_TRAIN]
    )
    assert report[K.INPUTS][K.HELDOUT]["spec"].endswith(":val")
    saved = json.loads((data / "out-good" / "report.json").read_text())
    assert saved == report


def test_collapsed_set_is_called_collapsed(data: Path) -> None:
    report = _run(data, "collapsed")
    assert report[K.METRICS][K.DIVERSITY][K.VERDICT] == "collapsed"
    assert any(line.startswith("diversity: collapsed") for line in report[K.VERDICTS])
    assert report[K.METRICS][K.PRDC]["coverage"] < 0.3


def test_copies_are_flagged_and_real_duplicates_reported(data: Path) -> None:
    report = _run(data, "copies")
    mem = report[K.METRICS][K.MEMORIZATION]
    assert mem[K.VERDICT] == "possible copying"
    assert mem[K.PIXELS]["near_copy_fraction"] == 1.0
    assert mem[K.PIXELS]["closest_pairs"][0]["distance"] == 0.0
    # the test split is not the held-out set here: the duplicate is between val and train only
    assert report[K.DATA_FINDINGS][K.HELDOUT_TRAIN_DUPLICATES] == []


def test_duplicate_between_heldout_and_train_is_a_data_finding(data: Path) -> None:
    report = validate(
        f"{data}/real.npz:test", f"{data}/good.npz", data / "out", ValidateOptions(**FAST),  # type: ignore[arg-type]
        train=f"{data}/real.npz:train",
    )  # fmt: skip
    assert report[K.DATA_FINDINGS][K.HELDOUT_TRAIN_DUPLICATES] == [{"heldout": 7, "train": 11}]
    assert any("data finding" in line and "heldout[7] = train[11]" for line in report[K.VERDICTS])
    assert "the real set serves as held-out data" in " ".join(report[K.WARNINGS])


def test_html_report_is_self_contained(data: Path) -> None:
    _run(data, "collapsed")
    page = (data / "out-collapsed" / "report.html").read_text()
    assert "class='bad'>diversity: collapsed" in page
    assert "class='bad'>memorization: ok" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 5  # two grids, two histograms, closest pairs
    assert not re.search(r'src="(?!data:)', page), "no external resources"


def test_paired_frd_and_utility(data: Path) -> None:
    from medisynth.metrics.paired import ssim

    real = np.load(data / "real.npz")
    noisy = np.clip(real["test_images"] + RNG.normal(0, 8, real["test_images"].shape), 0, 255)
    np.savez(data / "pairs.npz", train_images=noisy.astype(np.uint8),
             train_labels=real["test_labels"])  # fmt: skip
    options = {**FAST, "metrics": ("paired", "frd", "utility"), "seeds": 1, "epochs": 1,
               "radiomics_extractor": "radiomics-lite"}  # fmt: skip
    report = validate(
        f"{data}/real.npz:test", f"{data}/pairs.npz", data / "out",
        ValidateOptions(**options), train=f"{data}/real.npz:train",  # type: ignore[arg-type]
    )  # fmt: skip
    metrics = report[K.METRICS]
    expected = ssim(np.load(data / "pairs.npz")["train_images"][:, None] / 255.0,
                    real["test_images"][:, None] / 255.0, data_range=1.0)  # fmt: skip
    assert metrics[K.PAIRED]["ssim"]["mean"] == pytest.approx(expected.mean(), rel=1e-5)
    assert metrics[K.PAIRED]["data_range"] == 1.0
    frd = metrics[K.FRD]
    assert frd[K.EXTRACTOR] == "radiomics-lite" and frd[K.SQUARED_DISTANCE] > 0
    assert frd[K.VALUE] == pytest.approx(np.log(frd[K.SQUARED_DISTANCE]))
    assert set(metrics[K.UTILITY]) == {
        "real", "real+classic", "synthetic", "real+synthetic", "real+classic+synthetic"
    }  # fmt: skip
    assert "classic augmentation" in metrics[K.UTILITY]["real+classic+synthetic"][
        "paired_difference"]["verdict"]  # fmt: skip
    assert any(v.startswith("utility: ") and "beyond classic" in v for v in report[K.VERDICTS])


def test_paired_metrics_inside_masks_from_the_cli(data: Path) -> None:
    from medisynth.metrics.paired import psnr

    real = np.load(data / "real.npz")["test_images"]
    noisy = np.clip(real + RNG.normal(0, 20, real.shape), 0, 255).astype(np.uint8)
    masks = np.zeros_like(real)
    masks[:, 2:10, 3:11] = 1
    np.save(data / "noisy.npy", noisy)
    np.save(data / "masks.npy", masks)
    out = data / "masked"
    status = main(["validate", "--real", f"{data}/real.npz:test", "--synthetic",
                   f"{data}/noisy.npy", "--metrics", "paired", "--mask", f"{data}/masks.npy",
                   "-o", str(out)])  # fmt: skip
    assert status == 0
    paired = json.loads((out / "report.json").read_text())[K.METRICS][K.PAIRED]
    expected = psnr(noisy[:, None] / 255.0, real[:, None] / 255.0, 1.0, mask=masks > 0)
    assert paired["masked"] and paired["psnr"]["mean"] == pytest.approx(expected.mean())
    assert paired["psnr"]["mean"] != pytest.approx(
        psnr(noisy[:, None] / 255.0, real[:, None] / 255.0, 1.0).mean()
    )


def test_frd_extractor_from_the_cli(data: Path) -> None:
    from medisynth.metrics.features import extract_features
    from medisynth.metrics.frechet import frd

    out = data / "frd"
    status = main(["validate", "--real", f"{data}/real.npz:test", "--synthetic",
                   f"{data}/good.npz", "--metrics", "frd", "--frd-extractor", "radiomics-lite",
                   "-o", str(out)])  # fmt: skip
    assert status == 0
    report = json.loads((out / "report.json").read_text())[K.METRICS][K.FRD]
    real = np.load(data / "real.npz")["test_images"][:, None] / 255.0
    good = np.load(data / "good.npz")["train_images"][:, None] / 255.0
    expected = frd(*(extract_features(x, "radiomics-lite") for x in (real, good)))
    assert report[K.EXTRACTOR] == "radiomics-lite"
    assert report[K.SQUARED_DISTANCE] == pytest.approx(expected, rel=1e-6)


def test_frd_without_pyradiomics_says_how_to_install_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """pyradiomics is not a dependency (its sdist needs --no-build-isolation): without it the
    default FRD falls back to radiomics-lite with a logged note; an explicit choice stops."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "radiomics" else find_spec(name, *args),
    )
    np.save(tmp_path / "real.npy", _distribution(12)[:, None])
    np.save(tmp_path / "syn.npy", _distribution(12)[:, None])
    sets = [f"{tmp_path}/real.npy", f"{tmp_path}/syn.npy"]
    options = ValidateOptions(**{**FAST, "metrics": ("frd",)})  # type: ignore[arg-type]
    with caplog.at_level("WARNING", logger="medisynth.validate.protocol"):
        report = validate(*sets, tmp_path / "out", options)
    assert report[K.METRICS][K.FRD][K.EXTRACTOR] == "radiomics-lite"
    install = "pip install --no-build-isolation pyradiomics==3.0.1"
    assert any(install in w for w in report[K.WARNINGS])
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("radiomics-lite" in m and install in m for m in logged)

    args = ["--metrics", "frd", "--frd-extractor", "radiomics:filtered", "-o", str(tmp_path / "x")]
    status = main(["validate", "--real", sets[0], "--synthetic", sets[1], *args])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: pyradiomics is not installed")
    assert install in err[0]


def test_paired_metrics_need_equal_counts(data: Path) -> None:
    with pytest.raises(ConfigError, match="paired"):
        validate(f"{data}/real.npz:test", f"{data}/good.npz", data / "out",
                 ValidateOptions(**{**FAST, "metrics": ("paired",)}))  # type: ignore[arg-type]  # fmt: skip


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ConfigError, match="known: fid"):
        ValidateOptions(metrics=("fid", "is")).check()


def test_volumes_get_per_plane_fid(tmp_path: Path) -> None:
    vols = (RNG.random((12, 8, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "v.npz", train_images=vols, train_labels=np.zeros(12))
    np.savez(tmp_path / "s.npz", train_images=vols[::-1].copy(), train_labels=np.zeros(12))
    report = validate(str(tmp_path / "v.npz"), str(tmp_path / "s.npz"), tmp_path / "out",
                      ValidateOptions(**{**FAST, "extractor": "radiomics-lite",  # type: ignore[arg-type]
                                         "metrics": ("fid", "frd", "diversity")}))  # fmt: skip
    assert set(report[K.METRICS][K.FID]) >= {K.VALUE}
    assert report[K.METRICS][K.FID][K.VALUE] == pytest.approx(0.0, abs=1e-6)  # same set, reordered


def test_cli_happy_path_and_errors(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = data / "cli"
    status = main(["validate", "--real", f"{data}/real.npz:test", "--synthetic",
                   f"{data}/collapsed.npz", "--train", f"{data}/real.npz:train",
                   "--extractor", "pixels", "-o", str(out)])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "diversity: collapsed" in printed and "report.html" in printed
    assert (out / "report.json").is_file() and (out / "report.html").is_file()

    status = main(["validate", "--real", f"{data}/real.npz", "--synthetic", f"{data}/good.npz",
                   "-o", str(out)])  # fmt: skip
    assert status == 2
    assert "several splits" in capsys.readouterr().err
    status = main(["validate", "--real", f"{data}/real.npz:test", "--synthetic",
                   f"{data}/good.npz", "--extractor", "vgg", "-o", str(out)])  # fmt: skip
    assert status == 2
    assert "unknown feature extractor 'vgg'" in capsys.readouterr().err
    status = main(["validate", "--real", f"{data}/real.npz:test", "--synthetic",
                   f"{data}/good.npz", "--metrics", "fid,nope", "-o", str(out)])  # fmt: skip
    assert status == 2


def _disc_pairs(n: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images of bright discs on noise, and their 0/1 masks (N, H, W)."""
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        radius = RNG.uniform(2, 4)
        cy, cx = RNG.uniform(radius, size - radius, 2)
        masks[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    images = np.clip(80 + 90 * masks + RNG.normal(0, 30, masks.shape), 0, 255)
    return images.astype(np.uint8), masks


def test_segmentation_utility_from_npz_masks(tmp_path: Path) -> None:
    (train, train_m), (test, test_m), (syn, syn_m) = (_disc_pairs(n) for n in (24, 8, 16))
    np.savez(tmp_path / "real.npz", train_images=train, train_labels=np.zeros(24),
             train_masks=train_m, test_images=test, test_labels=np.zeros(8),
             test_masks=test_m)  # fmt: skip
    np.savez(tmp_path / "syn.npz", train_images=syn, train_labels=np.zeros(16), train_masks=syn_m)
    report = validate(
        f"{tmp_path}/real.npz:test", f"{tmp_path}/syn.npz", tmp_path / "out",
        ValidateOptions(**{**FAST, "metrics": ("segmentation",), "seeds": 2, "epochs": 1}),  # type: ignore[arg-type]
        train=f"{tmp_path}/real.npz:train",
    )  # fmt: skip
    seg = report[K.METRICS][K.SEGMENTATION]
    assert set(seg[K.CONDITIONS]) == {
        "real", "real+classic", "synthetic", "real+synthetic", "real+classic+synthetic"
    }  # fmt: skip
    assert seg[K.CONDITIONS]["real+synthetic"]["n_train"] == 40
    assert seg[K.CONDITIONS]["real+classic"]["augmentation"][1].startswith("RandAffine")
    assert len(seg[K.CONDITIONS]["real"][K.DICE]["per_seed"]) == 2 and seg["seeds"] == [0, 1]
    assert seg[K.SETTINGS]["network"] == "monai.networks.nets.UNet" and seg["epochs"] == 1
    assert seg["n_test"] == 8 and "0.95" in seg[K.RULE]
    line = next(v for v in report[K.VERDICTS] if v.startswith("segmentation utility:"))
    assert "synthetic-only Dice" in line and "vs real" in line
    assert report[K.INPUTS][K.REAL]["masks"]
    assert not [w for w in report[K.WARNINGS] if "segmentation" in w]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<th>real+synthetic</th>" in page and "rule:" in page
    assert "beyond classic augmentation" in page and "RandAffine" in page


def test_segmentation_masks_from_the_cli_and_skips(tmp_path: Path) -> None:
    (train, train_m), (test, test_m) = _disc_pairs(16), _disc_pairs(8)
    for name, array in (("train", train), ("train_m", train_m), ("test", test),
                        ("test_m", test_m * 255)):  # fmt: skip
        np.save(tmp_path / f"{name}.npy", array)
    out = tmp_path / "out"
    args = ["validate", "--real", f"{tmp_path}/test.npy", "--synthetic", f"{tmp_path}/train.npy",
            "--metrics", "segmentation", "--seeds", "1", "--epochs", "1",
            "-o", str(out)]  # fmt: skip
    status = main([*args, "--real-masks", f"{tmp_path}/test_m.npy",
                   "--synthetic-masks", f"{tmp_path}/train_m.npy"])  # fmt: skip
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report[K.METRICS][K.SEGMENTATION][K.CONDITIONS]) == ["synthetic"]
    assert "only synthetic training" in " ".join(report[K.WARNINGS])
    assert main(args) == 0  # no masks: skipped with a warning
    report = json.loads((out / "report.json").read_text())
    assert K.SEGMENTATION not in report[K.METRICS]
    assert any(w.startswith("segmentation skipped:") for w in report[K.WARNINGS])
    np.save(tmp_path / "bad_m.npy", test_m[:, :12])
    assert main([*args, "--real-masks", f"{tmp_path}/bad_m.npy"]) == 2


def test_small_sets_get_a_warning_on_distribution_metrics(data: Path) -> None:
    few = _distribution(20)
    np.save(data / "few.npy", few)
    small = validate(
        f"{data}/real.npz:test", f"{data}/few.npy", data / "out-few", ValidateOptions(**FAST),  # type: ignore[arg-type]
    )  # fmt: skip
    said = [w for w in small[K.WARNINGS] if "60 real and 20 synthetic" in w]
    assert len(said) == 1 and "reference computed at the same sizes" in said[0]
    assert not [w for w in _run(data, "good")[K.WARNINGS] if "synthetic images: below" in w]
