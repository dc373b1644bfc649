"""A real Orthanc PACS on loopback for the push tests (Debian package ``orthanc``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medisynth.export.orthanc import LocalOrthanc, orthanc_executable


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOrthanc]:
    """Orthanc with its own storage, loopback only, DICOMweb enabled, called AE title checked."""
    if orthanc_executable() is None:
        pytest.skip("Orthanc is not installed (Debian package 'orthanc'; .ci/run installs it)")
    with LocalOrthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
