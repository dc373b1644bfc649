"""Packages written by earlier medisynth versions keep loading (migrated) and generate the same
images; unknown and newer formats are refused.

``tests/fixtures/packages/dcgan_v1`` is a tiny class-conditional DCGAN package (16x16, uint8
intensity map, random weights) written by medisynth 0.1.0 (package format ``medisynth-model-1``);
``dcgan_v1_seed3.npz`` holds what ``generate_arrays(package, 6, "1,2", seed=3)`` returned then.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from medisynth.apply.generate import generate_arrays
from medisynth.config import NOT_RECORDED
from medisynth.errors import ReadError
from medisynth.package import load_package, save_package
from medisynth.package_format import CURRENT, MIGRATIONS, format_name

FIXTURES = Path(__file__).parent / "fixtures" / "packages"


def test_a_version_1_package_generates_the_same_arrays(tmp_path: Path) -> None:
    package = shutil.copytree(FIXTURES / "dcgan_v1", tmp_path / "model")
    expected = np.load(FIXTURES / "dcgan_v1_seed3.npz")
    images, labels = generate_arrays(package, 6, "1,2", seed=3)
    np.testing.assert_array_equal(labels, expected["labels"])
    # identical up to float32 summation order, which depends on the number of torch threads
    # (1 thread vs 2: at most 3e-5 of the 0-255 range)
    np.testing.assert_allclose(images, expected["images"], rtol=0, atol=255 * 1e-6)


def _edit(path: Path, change: Callable[[Any], None], loader: Any, dumper: Any) -> None:
    value = loader(path.read_text(encoding="utf-8"))
    change(value)
    path.write_text(dumper(value), encoding="utf-8")


def test_a_version_1_package_is_read_without_the_paths_it_recorded(tmp_path: Path) -> None:
    """Version 1 configs held the user's paths (which can name patients): migrated away."""
    package = Path(shutil.copytree(FIXTURES / "dcgan_v1", tmp_path / "model"))

    def with_paths(config: dict[str, Any]) -> None:
        config["data"].update(path="/scans/DOE_JOHN/breast.npz", labels="/scans/DOE_JOHN/l.csv")
        config["train"]["out_dir"] = "/runs/DOE_JOHN"

    _edit(package / "config.yaml", with_paths, yaml.safe_load, yaml.safe_dump)
    _edit(
        package / "model_card.json",
        lambda card: card["data"].update(source="MedMNIST npz /scans/DOE_JOHN/breast.npz"),
        json.loads,
        json.dumps,
    )
    loaded = load_package(package)
    assert "DOE" not in loaded.config.to_yaml() and "DOE" not in json.dumps(loaded.card)
    assert loaded.config.data.path == NOT_RECORDED == loaded.config.train.out_dir
    assert loaded.card["format"] == format_name() and loaded.config.data.labels == NOT_RECORDED
    card_on_disk = json.loads((package / "model_card.json").read_text(encoding="utf-8"))
    assert card_on_disk["format"] == "medisynth-model-1"  # migrated in memory, files untouched


def test_the_current_version_is_written_and_read(tmp_path: Path) -> None:
    package = Path(shutil.copytree(FIXTURES / "dcgan_v1", tmp_path / "old"))
    loaded = load_package(package)
    again = save_package(tmp_path / "new", loaded.family, loaded.config)
    assert json.loads((again / "model_card.json").read_text())["format"] == format_name(CURRENT)
    images, _ = generate_arrays(again, 6, "1,2", seed=3)
    np.testing.assert_array_equal(images, generate_arrays(package, 6, "1,2", seed=3)[0])


@pytest.mark.parametrize(
    ("format_", "message"),
    [
        (format_name(CURRENT + 1), "newer than this medisynth reads.*upgrade medisynth"),
        ("medisynth-model-0", "unsupported package format"),
        ("someone-elses-model-1", "unsupported package format"),
        (None, "unsupported package format"),
    ],
)
def test_unknown_and_newer_formats_are_refused_with_what_to_do(
    tmp_path: Path, format_: str | None, message: str
) -> None:
    package = Path(shutil.copytree(FIXTURES / "dcgan_v1", tmp_path / "model"))
    _edit(
        package / "model_card.json",
        lambda card: card.update(format=format_),
        json.loads,
        json.dumps,
    )
    with pytest.raises(ReadError, match=message):
        load_package(package)


def test_every_version_below_the_current_one_has_a_migration() -> None:
    assert sorted(MIGRATIONS) == list(range(1, CURRENT))
