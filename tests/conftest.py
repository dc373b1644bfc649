"""Shared fixtures: where the real sample files live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared sample data folder: $MEDISYNTH_DATA, else <repo root>/../shared/data.

    Skips the test when the folder is absent (e.g. a clone without the shared data).
    """
    env = os.environ.get("MEDISYNTH_DATA")
    folder = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not folder.is_dir():
        pytest.skip(
            f"shared sample data not found at {folder} "
            "(set MEDISYNTH_DATA to the folder holding nibabel_samples/, pydicom_samples/, ...)"
        )
    return folder
