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


def phantoms(n: int, size: int, seed: int, noise: float) -> np.ndarray:
    """``(n, size, size)`` float32 images in [0, 1]: a soft bright ellipse of random shape and
    place on a dark background, plus Gaussian noise of standard deviation ``noise``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(0.35, 0.65, 2)
        ry, rx = rng.uniform(0.15, 0.35, 2)
        r = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
        inside = 1.0 / (1.0 + np.exp((r - 1.0) * 8.0))
        out[i] = 0.15 + 0.6 * inside * (1.0 - 0.3 * r) + rng.normal(0.0, noise, (size, size))
    return np.clip(out, 0.0, 1.0)


def write_png_folder(folder: Path, images: np.ndarray) -> str:
    """``images`` in [0, 1] as 16-bit PNG files carrying metadata a study must strip (a text
    chunk and a physical size)."""
    from PIL import Image, PngImagePlugin

    folder.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "acquired at site A")
    for i, image in enumerate(images):
        pixels = np.rint(image * 65535).astype(np.uint16)
        Image.fromarray(pixels).save(folder / f"scan_{i:03d}.png", pnginfo=info, dpi=(72, 72))
    return str(folder)
