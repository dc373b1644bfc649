"""Packages written by earlier medisynth versions keep loading and generate the same images.

``tests/fixtures/packages/dcgan_v1`` is a tiny class-conditional DCGAN package (16x16, uint8
intensity map, random weights) written by medisynth 0.1.0 (package format ``medisynth-model-1``);
``dcgan_v1_seed3.npz`` holds what ``generate_arrays(package, 6, "1,2", seed=3)`` returned then.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from medisynth.apply.generate import generate_arrays

FIXTURES = Path(__file__).parent / "fixtures" / "packages"


def test_a_version_1_package_generates_the_same_arrays(tmp_path: Path) -> None:
    package = shutil.copytree(FIXTURES / "dcgan_v1", tmp_path / "model")
    expected = np.load(FIXTURES / "dcgan_v1_seed3.npz")
    images, labels = generate_arrays(package, 6, "1,2", seed=3)
    np.testing.assert_array_equal(labels, expected["labels"])
    # identical up to float32 summation order, which depends on the number of torch threads
    # (1 thread vs 2: at most 3e-5 of the 0-255 range)
    np.testing.assert_allclose(images, expected["images"], rtol=0, atol=255 * 1e-6)
