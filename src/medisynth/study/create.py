"""``medisynth study create``: draw real and synthetic images and blind them for readers.

Blinding: every image is re-encoded the same way, so nothing but its pixels tells real from
synthetic: one format (8-bit PNG, or 16-bit PNG when either source has more than 8 bits; the same
for all), one size (the real set's; synthetic images of another size are resized), one intensity
window computed over the chosen real and synthetic images together (8-bit sources keep 0..255),
no metadata (no text chunks, no physical size, deterministic encoder settings), no compression
(so every file has the same length: a compressed size would tell how smooth an image is) and
file names that are opaque random ids. The database records what each side was drawn from (size,
type, fingerprint, generating model; no path): :func:`source_record`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medisynth.data.sets import ImageSet, generated_by, load_image_set
from medisynth.errors import ConfigError, ReadError
from medisynth.files import atomic_folder
from medisynth.study.store import IMAGES, add_image, init_study, is_study, record_sources

#: the zlib level of every PNG: 0 (stored, not compressed), so a file's length depends on the
#: image size and bit depth alone, the same for every image of a study, and cannot tell smooth
#: (often synthetic) images from noisy ones
PNG_COMPRESS_LEVEL = 0


@dataclass(frozen=True)
class StudySummary:
    """What ``create_study`` wrote."""

    folder: Path
    n_real: int
    n_synthetic: int
    bits: int
    size: tuple[int, int]


def create_study(
    real: str,
    synthetic: str,
    out: str | Path,
    n: int = 100,
    synthetic_fraction: float = 0.5,
    seed: int = 0,
) -> StudySummary:
    """Write a new study folder ``out`` with ``n`` blinded images, a ``synthetic_fraction`` of
    them synthetic, drawn with ``seed``.

    Raises:
        ConfigError: bad ``n`` / fraction, or an existing ``out``.
        ReadError: unreadable sets, 3D sets, too few images, mixed channel counts.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a reader study" if is_study(out) else "a file or a non-empty folder"
        raise ConfigError(f"{out}: already exists ({what}); give a new output folder")
    if n < 2:
        raise ConfigError(f"-n {n}: a study needs at least 2 images")
    if not 0.0 < synthetic_fraction < 1.0:
        raise ConfigError(f"--synthetic-fraction {synthetic_fraction}: must be between 0 and 1")
    real_set, synthetic_set = load_image_set(real), load_image_set(synthetic)
    n_synthetic = min(n - 1, max(1, round(n * synthetic_fraction)))
    n_real = n - n_synthetic
    rng = np.random.default_rng(seed)
    picks = {
        "real": _pick(real_set, n_real, rng),
        "synthetic": _pick(synthetic_set, n_synthetic, rng),
    }
    if real_set.images.shape[1] != synthetic_set.images.shape[1]:
        raise ReadError(
            synthetic,
            f"{synthetic_set.images.shape[1]} channels, the real images have "
            f"{real_set.images.shape[1]}",
            "give sets with the same number of channels",
        )
    size = (int(real_set.images.shape[2]), int(real_set.images.shape[3]))
    eight_bit = {real_set.source_dtype, synthetic_set.source_dtype} <= {"uint8"}
    bits = 8 if eight_bit else 16
    if real_set.images.shape[1] == 3:
        bits = 8  # PNG has no 16-bit RGB in Pillow
    chosen = {
        truth: _resize(data.images[index], size)
        for truth, (data, index) in {
            "real": (real_set, picks["real"]),
            "synthetic": (synthetic_set, picks["synthetic"]),
        }.items()
    }
    window = _window(chosen, eight_bit)
    entries = [
        (truth, i, int(index))
        for truth in ("real", "synthetic")
        for i, index in enumerate(picks[truth])
    ]
    with atomic_folder(out) as folder:
        conn = init_study(folder)
        try:
            conn.execute("BEGIN")
            sources = {"real": real_set, "synthetic": synthetic_set}
            record_sources(conn, {truth: source_record(s) for truth, s in sources.items()})
            for truth, i, index in entries:
                data = real_set if truth == "real" else synthetic_set
                image_id = secrets.token_hex(8)
                _write_png(folder / IMAGES / f"{image_id}.png", chosen[truth][i], window, bits)
                label = None if data.labels is None else int(np.ravel(data.labels[index])[0])
                add_image(conn, image_id, truth, label, index)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    return StudySummary(out, n_real, n_synthetic, bits, size)


def source_record(data: ImageSet) -> dict[str, object]:
    """What a study records of a source set: its description without the spec (a path), and
    the generating model's id when medisynth wrote the set."""
    record = {k: v for k, v in data.describe().items() if k != "spec"}
    model = generated_by(data.spec)
    return record if model is None else {**record, "model_id": model}


def _pick(data: ImageSet, count: int, rng: np.random.Generator) -> np.ndarray:
    if data.is_3d:
        raise ReadError(data.spec, "3D volumes", "a reader study shows 2D images; give 2D sets")
    if data.images.shape[1] not in (1, 3):
        raise ReadError(data.spec, f"{data.images.shape[1]} channels", "give grey or RGB images")
    if len(data.images) < count:
        raise ReadError(
            data.spec,
            f"{len(data.images)} images, the study needs {count}",
            "lower -n or change --synthetic-fraction",
        )
    return np.sort(rng.choice(len(data.images), size=count, replace=False))


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, C, H, W)`` float images at ``size`` (bilinear when the size differs)."""
    if tuple(images.shape[2:]) == size:
        return images.astype(np.float32)
    out = np.empty((len(images), images.shape[1], *size), np.float32)
    for i, image in enumerate(images):
        for c, plane in enumerate(image):
            resized = Image.fromarray(plane.astype(np.float32)).resize(
                (size[1], size[0]), Image.Resampling.BILINEAR
            )
            out[i, c] = np.asarray(resized)
    return out


def _window(chosen: dict[str, np.ndarray], eight_bit: bool) -> tuple[float, float]:
    """One intensity window over the real and synthetic images together (0..255 when both
    sources are 8-bit)."""
    if eight_bit:
        return 0.0, 255.0
    low = min(float(a.min()) for a in chosen.values())
    high = max(float(a.max()) for a in chosen.values())
    if not high > low:
        raise ReadError("study", f"every chosen image is constant ({low})", "check the sets")
    return low, high


def _write_png(path: Path, image: np.ndarray, window: tuple[float, float], bits: int) -> None:
    """Encode ``(C, H, W)`` with ``window`` as a metadata-free PNG of ``bits`` bits."""
    low, high = window
    unit = np.clip((image - low) / (high - low), 0.0, 1.0)
    top = 255 if bits == 8 else 65535
    values = np.rint(unit * top).astype(np.uint8 if bits == 8 else np.uint16)
    # uint8 (H, W, 3) -> RGB, uint8 (H, W) -> L, uint16 (H, W) -> I;16
    pil = Image.fromarray(np.moveaxis(values, 0, -1) if values.shape[0] == 3 else values[0])
    pil.save(path, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
