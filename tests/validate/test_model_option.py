"""``medisynth validate --model PACKAGE``: the set generated from the model in memory, the model
named in the report, the report's summary attached to the model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medisynth.cli import main
from medisynth.errors import ConfigError
from medisynth.package import CARD_JSON
from medisynth.validate import keys as K
from medisynth.validate.protocol import ValidateOptions, validate

FAST = ValidateOptions(metrics=("prdc", "diversity"), extractor="pixels", progress=False)


@pytest.fixture()
def package(tiny_run: Any) -> Path:
    """A conditional DCGAN (classes disc, bar) trained for 2 steps on ``tiny_npz`` (16x16)."""
    from medisynth.training.engine import train

    result = train(tiny_run(steps=2))
    assert result.package is not None
    return Path(result.package)


def _card(package: Path) -> dict[str, Any]:
    return json.loads((package / CARD_JSON).read_text())


def test_model_generates_the_set_and_gets_the_metrics(
    package: Path, tiny_npz: Path, tmp_path: Path
) -> None:
    card = _card(package)
    assert card["metrics"] == {}
    # train: 48 images, classes alternating (24 disc, 24 bar); the real set is the val split
    report = validate(f"{tiny_npz}:val", None, tmp_path / "out", FAST,
                      train=f"{tiny_npz}:train", model=package)  # fmt: skip
    model = report[K.INPUTS][K.MODEL]
    assert (model["model_id"], model["family"]) == (card["model_id"], card["family"])
    assert model["generated"] and model["seed"] == FAST.seed
    assert model["class_counts"] == {"disc": 24, "bar": 24}
    synthetic = report[K.INPUTS][K.SYNTHETIC]
    assert synthetic["n"] == 48 and synthetic["shape"] == [1, 16, 16] and synthetic["labels"]
    assert synthetic["spec"] == f"model:{card['model_id']}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]

    recorded = _card(package)["metrics"]
    assert recorded["values"][K.PRDC]["precision"] == report[K.METRICS][K.PRDC]["precision"]
    assert recorded["inputs"][K.MODEL]["model_id"] == card["model_id"]
    assert recorded["validated"] == report[K.CREATED]
    assert "## Metrics" in (package / "model_card.md").read_text()
    # the card names the sets by size and fingerprint, never by their paths or the package's
    for text in ((package / CARD_JSON).read_text(), (package / "model_card.md").read_text()):
        assert str(tmp_path) not in text and str(tiny_npz.parent) not in text
        assert str(package) not in text
    assert recorded["inputs"][K.REAL]["fingerprint"] == report[K.INPUTS][K.REAL]["fingerprint"]
    # the same seed gives the same synthetic set
    again = validate(f"{tiny_npz}:val", None, tmp_path / "again", FAST,
                     train=f"{tiny_npz}:train", model=package)  # fmt: skip
    assert again[K.INPUTS][K.SYNTHETIC]["fingerprint"] == synthetic["fingerprint"]
    assert again[K.METRICS][K.PRDC] == report[K.METRICS][K.PRDC]


def test_model_set_follows_the_real_size_and_balance(package: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    real = (rng.random((30, 12, 12)) * 255).astype(np.uint8)
    labels = np.r_[np.zeros(10, int), np.ones(20, int)]
    np.savez(tmp_path / "real12.npz", test_images=real, test_labels=labels)
    report = validate(str(tmp_path / "real12.npz"), None, tmp_path / "out", FAST, model=package)
    model = report[K.INPUTS][K.MODEL]
    assert model["class_counts"] == {"disc": 10, "bar": 20}  # no --train: the real set's
    assert model["model_size"] == [16, 16] and model["resized_to"] == [12, 12]
    assert report[K.INPUTS][K.SYNTHETIC]["shape"] == [1, 12, 12]


def test_class_balance_reaches_the_generator_as_counts(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set's class balance goes to the generator as counts per class (a typed value, no
    text spec made and parsed back), and gives the images the text form gave."""
    import medisynth.apply.generate as generate

    seen: list[object] = []
    real_generate = generate.generate_arrays

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[2])
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(generate, "generate_arrays", spy)
    labels = np.r_[np.zeros(3, int), np.ones(6, int)]
    images = (np.random.default_rng(0).random((9, 16, 16)) * 255).astype(np.uint8)
    np.savez(tmp_path / "real.npz", test_images=images, test_labels=labels)
    report = validate(str(tmp_path / "real.npz"), None, tmp_path / "out", FAST, model=package)
    assert seen == [(3, 6)]
    assert report[K.INPUTS][K.MODEL]["balance_from"] == str(tmp_path / "real.npz")
    typed, text = (real_generate(package, 9, b, seed=2) for b in ((3, 6), "3,6"))
    assert np.array_equal(typed[0], text[0]) and typed[1].tolist() == text[1].tolist()


def test_model_beside_a_given_synthetic_set_is_named_only(
    package: Path, tiny_npz: Path, tmp_path: Path
) -> None:
    report = validate(f"{tiny_npz}:val", f"{tiny_npz}:train", tmp_path / "out", FAST,
                      model=package)  # fmt: skip
    assert report[K.INPUTS][K.MODEL]["generated"] is False
    assert report[K.INPUTS][K.SYNTHETIC]["spec"] == f"{tiny_npz}:train"
    assert _card(package)["metrics"]["values"][K.PRDC]


def test_cli_model_option_and_missing_synthetic_set(
    package: Path, tiny_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    status = main(["validate", "--real", f"{tiny_npz}:val", "--train", f"{tiny_npz}:train",
                   "--model", str(package), "--metrics", "prdc", "--extractor", "pixels",
                   "--bootstrap", "0", "-o", str(out)])  # fmt: skip
    assert status == 0
    assert "model card" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report[K.INPUTS][K.MODEL]["model_id"] == _card(package)["model_id"]
    recorded = _card(package)["metrics"]["values"][K.PRDC]
    assert recorded["recall"] == report[K.METRICS][K.PRDC]["recall"]

    status = main(["validate", "--real", f"{tiny_npz}:val", "-o", str(tmp_path / "none")])
    assert status == 2
    assert "no synthetic set: give --synthetic SET, or --model PACKAGE" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="give --synthetic SET, or --model PACKAGE"):
        validate(f"{tiny_npz}:val", None, tmp_path / "none", FAST)
    assert not (tmp_path / "none").exists()
