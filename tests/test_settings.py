"""The leaf of the configuration: section models and generic helpers, no registry needed."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from pydantic import ValidationError

from medisynth.errors import ConfigError
from medisynth.settings import (
    DataConfig,
    FamilyConfig,
    TrainConfig,
    check_keys,
    format_validation_error,
)


def test_importing_the_settings_loads_no_other_layer() -> None:
    """Beyond what ``import medisynth`` itself loads (its convenience names), the settings
    bring in no medisynth module but the errors and files helpers: no registry, no families."""
    code = (
        "import sys, medisynth; before = set(sys.modules); import medisynth.settings; "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('medisynth')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    allowed = {"medisynth.settings", "medisynth.errors", "medisynth.files"}
    assert set(ast.literal_eval(loaded)) <= allowed
    assert "medisynth.settings" in loaded


def test_a_family_section_is_checked_against_the_class_the_lookup_names() -> None:
    class WideConfig(FamilyConfig):
        width: int = 4

    check_keys(FamilyConfig, {"family": "wide"})
    with pytest.raises(ConfigError, match="unknown key 'width'"):
        check_keys(FamilyConfig, {"family": "wide", "width": 8})  # no lookup: the base only
    seen: list[str] = []

    def lookup(name: str) -> type[FamilyConfig]:
        seen.append(name)
        return WideConfig

    check_keys(FamilyConfig, {"family": "wide", "width": 8}, family_config=lookup)
    with pytest.raises(ConfigError, match=r"unknown key 'model\.widht'; did you mean 'width'"):
        check_keys(FamilyConfig, {"widht": 8}, "model.", family_config=lookup)
    assert seen == ["wide", "dcgan"]


def test_validation_errors_fit_on_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        TrainConfig(steps=0, batch_size=0)
    message = format_validation_error(caught.value, "")
    assert "\n" not in message and message.startswith("invalid config: steps: ")
    assert "batch_size: Input should be greater than or equal to 1 (got 0)" in message


def test_data_paths_expand_and_are_required() -> None:
    with pytest.raises(ConfigError, match="data.path is required for data.format='slices'"):
        DataConfig(format="slices").resolved_path()
    with pytest.raises(ValidationError, match="source prior needs paired data"):
        DataConfig(format="unpaired", source_prior="matched")
