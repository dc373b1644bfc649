"""Model packages: save -> load gives the same generator, card and intensity map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medisynth.config import RunConfig
from medisynth.data.intensity import IntensityMap
from medisynth.errors import ConfigError, ReadError
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo
from medisynth.package import load_package, save_package

DATA = DataInfo(
    channels=1,
    spatial_shape=(16, 16),
    class_names=["malignant", "benign"],
    class_counts={0: 30, 1: 90},
    intensity_map=IntensityMap.integer_range("uint16"),
    source_dtype="uint16",
    modality="US",
    fingerprint="ab" * 32,
    source="test data",
)


def trained_family(seed: int = 0):  # type: ignore[no-untyped-def]
    cfg = RunConfig.from_dict(
        {"seed": 5, "model": {"g_channels": 4, "d_channels": 4, "latent_dim": 8}}
    )
    torch.manual_seed(seed)
    family = get_family("dcgan").build(cfg.model, DATA)
    batch = {"image": torch.rand(8, 1, 16, 16) * 2 - 1, "label": torch.arange(8) % 2}
    family.train_step(batch)
    return family, cfg


def test_round_trip_gives_the_same_images_and_metadata(tmp_path: Path) -> None:
    family, cfg = trained_family()
    folder = save_package(tmp_path / "model", family, cfg, training={"steps": 1})
    package = load_package(folder)
    labels = torch.tensor([0, 1, 1, 0])
    expected = family.sample(4, labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(package.sample(4, labels, seed=3), expected)
    assert package.config == cfg.without_paths()  # the settings, without user paths
    assert package.config.train.out_dir == "<not recorded>"
    assert package.intensity_map == DATA.intensity_map
    assert package.class_names == ["malignant", "benign"]
    card = json.loads((folder / "model_card.json").read_text())
    assert card["seed"] == 5
    assert card["data"]["fingerprint"] == "ab" * 32
    assert card["data"]["class_balance"] == {"malignant": 0.25, "benign": 0.75}
    assert card["training"]["steps"] == 1 and card["model"]["loss"] == "hinge"
    assert {"medisynth", "torch", "numpy", "python"} <= card["versions"].keys()
    markdown = (folder / "model_card.md").read_text()
    assert "malignant (30 images)" in markdown and "ab" * 32 in markdown
    source = package.to_source_units(torch.tensor([[-1.0, 1.0]]))
    assert source.tolist() == [[0.0, 65535.0]]


def test_saving_again_replaces_the_package_but_never_other_folders(tmp_path: Path) -> None:
    family, cfg = trained_family()
    folder = save_package(tmp_path / "model", family, cfg)
    other, _ = trained_family(seed=1)
    save_package(folder, other, cfg)
    reloaded = load_package(folder)
    assert torch.equal(
        reloaded.sample(2, [0, 1], seed=0),
        other.sample(2, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(0)),
    )
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "scan.nii").write_text("patient data")
    with pytest.raises(ConfigError, match="not a medisynth model package"):
        save_package(precious, family, cfg)
    assert (precious / "scan.nii").read_text() == "patient data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "precious"]


def test_loading_broken_packages_explains_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="no such model folder"):
        load_package(tmp_path / "nothing")
    family, cfg = trained_family()
    folder = save_package(tmp_path / "model", family, cfg)
    (folder / "weights.safetensors").write_bytes(b"junk")
    with pytest.raises(ReadError, match="unreadable weights"):
        load_package(folder)
    (folder / "intensity_map.json").unlink()
    with pytest.raises(ReadError, match="missing intensity_map.json"):
        load_package(folder)


def test_a_package_from_another_version_names_both_versions(tmp_path: Path) -> None:
    family, cfg = trained_family()
    folder = save_package(tmp_path / "model", family, cfg)
    card = json.loads((folder / "model_card.json").read_text())
    card["versions"]["medisynth"] = "9.9.9"
    (folder / "model_card.json").write_text(json.dumps(card))
    config = (folder / "config.yaml").read_text()
    (folder / "config.yaml").write_text(config.replace("model:\n", "model:\n  future_key: 1\n"))
    with pytest.raises(ReadError, match=r"written by medisynth 9\.9\.9.*future_key") as err:
        load_package(folder)
    assert "load it with medisynth 9.9.9, or retrain" in str(err.value)


def test_card_names_the_model_its_architecture_use_and_licence(tmp_path: Path) -> None:
    family, cfg = trained_family()
    cfg = cfg.model_copy(
        update={"card": cfg.card.model_copy(update={"license": "CC-BY-4.0", "limitations": ["x"]})}
    )
    folder = save_package(tmp_path / "model", family, cfg)
    card = json.loads((folder / "model_card.json").read_text())
    from safetensors.torch import load_file

    from medisynth.package import model_id

    assert card["model_id"] == model_id(load_file(str(folder / "weights.safetensors")), cfg)
    assert card["model_id"].startswith("dcgan-") and len(card["model_id"]) == len("dcgan-") + 12
    generator = card["architecture"]["inference_networks"]["generator"]
    assert generator["parameters"] == sum(
        p.numel() for p in family.inference_nets()["generator"].parameters()
    )
    assert card["license"] == "CC-BY-4.0" and card["limitations"] == ["x"]
    markdown = (folder / "model_card.md").read_text()
    for heading in ("## Intended use", "## Out of scope", "## Known limitations"):
        assert heading in markdown
    assert card["model_id"] in markdown


def test_validation_metrics_go_into_the_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medisynth.cli import main

    family, cfg = trained_family()
    folder = save_package(tmp_path / "model", family, cfg)
    report = {
        "created": "2026-01-01T00:00:00+00:00",
        "inputs": {"real": "test.npz:test"},
        "verdicts": ["diversity: ok (ratio 1.02)"],
        "metrics": {"fid": {"value": 59.1, "per_sample": list(range(500))}},
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert main(["card", str(folder), "--add-metrics", str(tmp_path / "report.json")]) == 0
    printed = capsys.readouterr().out
    assert "diversity: ok (ratio 1.02)" in printed and "59.1" in printed
    card = json.loads((folder / "model_card.json").read_text())
    assert card["metrics"]["values"]["fid"] == {"value": 59.1}  # the sample list is dropped
    assert main(["card", str(tmp_path)]) == 2


def _flip_tensor_bytes(weights: Path) -> None:
    """Invert a few bytes inside the tensor data (after the safetensors JSON header)."""
    raw = bytearray(weights.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    middle = start + (len(raw) - start) // 2
    for i in range(middle, middle + 4):
        raw[i] ^= 0xFF
    weights.write_bytes(bytes(raw))


def test_changed_weights_are_refused_naming_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medisynth.cli import main

    family, cfg = trained_family()
    folder = save_package(tmp_path / "model", family, cfg)
    load_package(folder)  # intact: loads
    _flip_tensor_bytes(folder / "weights.safetensors")
    with pytest.raises(ReadError, match="weights do not match the model card") as err:
        load_package(folder)
    assert str(folder) in str(err.value)
    assert main(["generate", str(folder), "-n", "2", "-o", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert message.startswith(f"error: {folder}: the weights do not match")
    assert message.count("\n") == 1  # one line, no traceback
    assert not any((tmp_path / "out").glob("**/*.png"))


def test_a_model_that_gives_nan_is_an_error_not_an_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medisynth.cli import main

    family, cfg = trained_family()
    last = list(family.inference_nets()["generator"].parameters())[-1]
    with torch.no_grad():
        last.fill_(float("nan"))
    folder = save_package(tmp_path / "model", family, cfg)  # a consistent package, broken model
    out = tmp_path / "out"
    assert main(["generate", str(folder), "-n", "2", "-o", str(out)]) == 2
    assert "NaN or infinite values (generated images)" in capsys.readouterr().err
    assert not any(out.glob("**/*.png")) and not (out / "generation.json").exists()
    from medisynth.package import ModelOutputError

    package = load_package(folder)
    with pytest.raises(ModelOutputError, match="NaN or infinite"):
        package.to_source_units(package.sample(2, [0, 1]))
