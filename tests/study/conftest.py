"""Small real and synthetic sets and a study made from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medisynth.study.create import create_study


def write_sets(folder: Path, n: int = 30, size: int = 12) -> tuple[str, str]:
    """A uint8 npz 'real' set with labels and a float npy 'synthetic' set of another size."""
    rng = np.random.default_rng(0)
    real = folder / "real.npz"
    np.savez(
        real,
        test_images=rng.integers(0, 256, (n, size, size), dtype=np.uint8),
        test_labels=rng.integers(0, 2, (n, 1)),
    )
    synthetic = folder / "synthetic.npy"
    np.save(synthetic, rng.uniform(0, 255, (n, 1, size * 2, size * 2)).astype(np.float32))
    return f"{real}:test", str(synthetic)


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A study of 20 images (10 real, 10 synthetic)."""
    real, synthetic = write_sets(tmp_path)
    create_study(real, synthetic, tmp_path / "study", n=20, seed=0)
    return tmp_path / "study"
