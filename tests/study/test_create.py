"""The study folder: blinded images and the database."""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medisynth.cli import main
from medisynth.data.sets import load_image_set
from medisynth.errors import ConfigError
from medisynth.study import store
from medisynth.study.create import create_study

from .conftest import write_sets


def _chunks(path: Path) -> list[str]:
    """The PNG chunk types of a file, in order."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    names, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        names.append(data[offset + 4 : offset + 8].decode())
        offset += 12 + length
    return names


def _served(study: Path) -> dict[str, list[Path]]:
    conn = sqlite3.connect(study / store.DATABASE)
    rows = conn.execute("SELECT id, truth FROM images").fetchall()
    conn.close()
    files: dict[str, list[Path]] = {"real": [], "synthetic": []}
    for image_id, truth in rows:
        files[truth].append(study / store.IMAGES / f"{image_id}.png")
    return files


def test_real_and_synthetic_files_differ_only_in_pixels(study: Path) -> None:
    files = _served(study)
    assert len(files["real"]) == len(files["synthetic"]) == 10
    looks = set()
    for truth, paths in files.items():
        for path in paths:
            with Image.open(path) as image:
                looks.add((image.size, image.mode, tuple(_chunks(path)), tuple(image.info)))
            assert store.IMAGE_ID.fullmatch(path.stem), truth
    # the synthetic set is float (more than 8 bits) and twice the size: all the same after
    # blinding, 16-bit PNGs at the real size
    assert looks == {((12, 12), "I;16", ("IHDR", "IDAT", "IEND"), ())}
    assert sorted(p.name for p in (study / store.IMAGES).iterdir()) == sorted(
        p.name for paths in files.values() for p in paths
    )


def test_sixteen_bit_sources_give_sixteen_bit_pngs_with_one_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.save(tmp_path / "r.npy", rng.integers(0, 1000, (6, 1, 8, 8)).astype(np.int16))
    np.save(tmp_path / "s.npy", rng.integers(500, 3000, (6, 1, 8, 8)).astype(np.int16))
    create_study(str(tmp_path / "r.npy"), str(tmp_path / "s.npy"), tmp_path / "st", n=12)
    files = _served(tmp_path / "st")
    values = {}
    for truth, paths in files.items():
        arrays = [np.asarray(Image.open(p)) for p in paths]
        assert {Image.open(p).mode for p in paths} == {"I;16"}
        values[truth] = np.stack(arrays)
    # one window over both sets: the darkest pixel (real) is 0, the brightest (synthetic) 65535
    assert values["real"].min() == 0 and values["synthetic"].max() == 65535
    assert values["real"].max() < 65535 * 1000 / 3000 + 1


def test_eight_bit_sources_give_eight_bit_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for name in ("r", "s"):
        np.save(tmp_path / f"{name}.npy", rng.integers(0, 256, (4, 1, 8, 8), dtype=np.uint8))
    create_study(str(tmp_path / "r.npy"), str(tmp_path / "s.npy"), tmp_path / "st", n=8)
    paths = [p for group in _served(tmp_path / "st").values() for p in group]
    assert {Image.open(p).mode for p in paths} == {"L"}
    # 8-bit values are kept as they are (window 0..255)
    real = np.load(tmp_path / "r.npy")
    conn = store.open_study(tmp_path / "st")
    for image_id, truth, _, index in store.image_table(conn):
        if truth == "real":
            pixels = np.asarray(Image.open(tmp_path / "st" / store.IMAGES / f"{image_id}.png"))
            np.testing.assert_array_equal(pixels, real[index, 0])


def test_database_holds_no_path_and_labels(study: Path) -> None:
    conn = store.open_study(study)
    rows = store.image_table(conn)
    assert len(rows) == 20
    assert {truth for _, truth, _, _ in rows} == {"real", "synthetic"}
    assert {label for _, truth, label, _ in rows if truth == "real"} <= {0, 1}
    assert {label for _, truth, label, _ in rows if truth == "synthetic"} == {None}
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    dump = "\n".join(conn.iterdump())
    assert str(study.parent) not in dump and "real.npz" not in dump


def test_the_sets_drawn_from_are_recorded_without_paths(study: Path) -> None:
    real, synthetic = write_sets(study.parent)  # the same sets again (same seed)
    conn = store.open_study(study)
    sources = store.study_sources(conn)
    assert sources is not None
    for truth, spec in (("real", real), ("synthetic", synthetic)):
        described = load_image_set(spec).describe()
        assert sources[truth] == {k: v for k, v in described.items() if k != "spec"}
    assert sources["real"]["fingerprint"].endswith(":test") and sources["real"]["labels"]


def test_existing_folders_are_refused(tmp_path: Path, study: Path) -> None:
    real, synthetic = write_sets(tmp_path)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for target in (other, study):
        before = sorted(os.listdir(target))
        with pytest.raises(ConfigError, match="already exists"):
            create_study(real, synthetic, target, n=4)
        assert sorted(os.listdir(target)) == before
    assert (other / "keep.txt").read_text() == "mine"


def test_bad_requests_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, synthetic = write_sets(tmp_path, n=5)
    args = ["study", "create", "--real", real, "--synthetic", synthetic, "-o"]
    assert main([*args, str(tmp_path / "a"), "-n", "40"]) == 2
    assert "the study needs 20" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "b"), "--synthetic-fraction", "1.5"]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main([*args, str(tmp_path / "c"), "-n", "6"]) == 0
    assert "3 real + 3 synthetic" in capsys.readouterr().out
