"""Every docstring example in the package runs and prints what it says (docs cannot rot)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import medisynth

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(medisynth.__path__, prefix="medisynth.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
