"""The utility curve: per-fraction subsets that the GAN alone sees, every condition on the same
subset, an incremental, resumable run, one report with a verdict per fraction, and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medisynth.cli import main
from medisynth.config import RunConfig
from medisynth.errors import ConfigError
from medisynth.validate import curve as C

RNG = np.random.default_rng(0)


def _images(labels: np.ndarray, first: int) -> np.ndarray:
    """Class 0 bright at the top, class 1 at the bottom; pixel (0, 0) holds the image's index."""
    images = RNG.integers(0, 100, (len(labels), 16, 16))
    images[labels == 0, 1:8] += 120
    images[labels == 1, 8:] += 120
    images[:, 0, 0] = first + np.arange(len(labels))
    return images.astype(np.uint8)


@pytest.fixture
def curve_data(tmp_path: Path) -> Path:
    splits = {"train": np.repeat([0, 1], [30, 10]), "val": np.repeat([0, 1], [8, 8]),
              "test": np.repeat([0, 1], [12, 12])}  # fmt: skip
    arrays = {}
    for i, (split, labels) in enumerate(splits.items()):
        arrays[f"{split}_images"] = _images(labels, 100 * i)
        arrays[f"{split}_labels"] = labels[:, None]
    np.savez(tmp_path / "toy.npz", **arrays)
    return tmp_path / "toy.npz"


def _config(path: Path, seed: int = 0, **train: object) -> RunConfig:
    return RunConfig.from_dict({
        "seed": seed,
        "data": {"path": str(path), "class_names": ["top", "bottom"]},
        "model": {"g_channels": 4, "d_channels": 4, "latent_dim": 8},
        "train": {"steps": 2, "batch_size": 4, "sample_every": 0, "checkpoint_every": 0,
                  "tensorboard": False, "progress": False, "threads": 1, **train},
    })  # fmt: skip


FAST = C.CurveOptions(fractions=(0.25, 1.0), minutes=1.0, seeds=1, classifier_seeds=1, epochs=1,
                      bootstrap=20, paired_bootstrap=50, progress=False)  # fmt: skip


def test_curve_trains_each_gan_on_its_subset_only(
    curve_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medisynth.training import engine

    seen: list[tuple[set[int], str]] = []

    class Recording(engine.Trainer):
        def fit(self, resume: bool = False, overwrite: bool = False) -> engine.TrainResult:
            result = super().fit(resume=resume, overwrite=overwrite)
            stored = np.round((self.dataset.images[:, 0, 0, 0].numpy() + 1) / 2 * 255)  # type: ignore[attr-defined]
            seen.append(({int(v) for v in stored}, self.data_info.fingerprint))
            return result

    monkeypatch.setattr(engine, "Trainer", Recording)
    out = tmp_path / "curve"
    report = C.utility_curve(_config(curve_data), out, FAST)
    assert len(seen) == 2  # one GAN per fraction
    for (indices, fingerprint), fraction in zip(seen, (0.25, 1.0), strict=True):
        cell = out / "cells" / C.cell_name(fraction, 0)
        subset = json.loads((cell / "subset.json").read_text())
        assert indices == set(subset["indices"])  # the images the engine loaded: the subset's
        assert fingerprint == subset["fingerprint"]
        card = json.loads((cell / "run" / "model" / "model_card.json").read_text())
        assert card["data"]["fingerprint"] == subset["fingerprint"]
        result = json.loads((cell / "cell.json").read_text())
        n = subset["n"]
        assert subset["class_counts"] == ([8, 2] if fraction == 0.25 else [30, 10])
        conditions = result["conditions"]
        assert {c: conditions[c]["n_train"] for c in conditions} == {
            "real": n, "real+classic": n, "synthetic": n, "real+synthetic": 2 * n,
            "real+classic+synthetic": 2 * n,
        }  # fmt: skip
        validation = json.loads((cell / "validation" / "report.json").read_text())
        assert validation["inputs"]["train"]["fingerprint"] == subset["fingerprint"]
        assert "/" not in validation["inputs"]["real"]["spec"]  # no path in the cell reports
    first = report["fractions"][0]
    assert first["n_real"] == 10 and report["conditions"][1] == "real+classic"
    assert first["paired_difference"]["baseline"] == "real+classic"
    assert report["verdicts"][0].startswith("fraction 0.25 (10 real training images")
    assert "classic augmentation" in report["verdicts"][0]
    assert report["augmentation"]["synthetic"] == ["horizontal flip of half the images "
                                                   "(left-right, p=0.5)"]  # fmt: skip
    assert any(t.startswith("RandAffine") for t in report["augmentation"]["real+classic"])
    page = (out / "curve.html").read_text()
    assert "data:image/png;base64" in page and "RandAffine" in page and "fraction 0.25" in page
    rows = (out / "curve.csv").read_text().splitlines()
    assert rows[0].startswith("fraction,n_real,seed,condition") and len(rows) == 1 + 2 * 5 * 2


def test_curve_resumes_and_refuses_other_settings(
    curve_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medisynth.training import engine

    out = tmp_path / "curve"
    options = C.CurveOptions(**{**FAST.__dict__, "fractions": (0.25,)})
    first = C.utility_curve(_config(curve_data, batch_size=16), out, options)
    assert first["cells"][0]["training"]["batch_size"] == 4  # 10 images: less than one batch
    second = C.utility_curve(_config(curve_data, seed=1, batch_size=16), out, options)
    assert [c["seed"] for c in second["cells"]] == [1]  # a repetition run by another process
    (out / "cells" / C.cell_name(0.25, 0) / "cell.json").unlink()  # killed after training

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished GAN must be reused")

    monkeypatch.setattr(engine.Trainer, "fit", no_training)
    again = C.utility_curve(_config(curve_data, batch_size=16), out, options)
    assert again["verdicts"] == first["verdicts"]
    pooled = C.utility_curve(_config(curve_data, batch_size=16), out, replace(options, seeds=2))
    assert [c["seed"] for c in pooled["cells"]] == [0, 1]  # both repetitions, none retrained
    assert pooled["cells"][1] == second["cells"][0]
    with pytest.raises(ConfigError, match="other settings"):
        C.utility_curve(_config(curve_data), out, options)  # another batch size
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty"):
        C.utility_curve(_config(curve_data), tmp_path / "mine", options)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_curve_refusals(curve_data: Path, tmp_path: Path) -> None:
    unconditional = RunConfig.from_dict(
        {
            **_config(curve_data).to_dict(),
            "model": {"g_channels": 4, "d_channels": 4, "conditional": False},
        }  # fmt: skip
    )
    with pytest.raises(ConfigError, match="class-conditional"):
        C.utility_curve(unconditional, tmp_path / "a", FAST)
    with pytest.raises(ConfigError, match="training split itself"):
        C.utility_curve(_config(curve_data), tmp_path / "b", FAST, test=f"{curve_data}:train")
    with pytest.raises(ConfigError, match="fractions must be in"):
        C.utility_curve(_config(curve_data), tmp_path / "c", C.CurveOptions(fractions=(0.0,)))


def test_cli_utility_curve(curve_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(_config(curve_data).to_dict()))  # JSON is YAML
    out = tmp_path / "cli"
    args = ["utility-curve", str(config), "--fractions", "1.0", "--minutes", "1", "--seeds", "1",
            "--classifier-seeds", "1", "--epochs", "1", "--bootstrap", "0",
            "--paired-bootstrap", "50", "--val", "none", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "curve.json").read_text())
    assert report["fractions"][0]["n_real"] == 40 and report["data"]["val"] is None
    assert main([*args[:3], "0.1,x", *args[4:]]) == 2
