import os
import stat
from pathlib import Path

import pytest

from medisynth.files import atomic_path, atomic_write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "b.txt") == 0o644


def test_replaced_files_keep_their_mode(tmp_path: Path) -> None:
    target = tmp_path / "shared.json"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "volume.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume.nii.gz"]


def test_atomic_folders_get_the_mode_mkdir_would_give_and_replace_the_old_one(
    tmp_path: Path,
) -> None:
    from medisynth.files import atomic_folder

    target = tmp_path / "package"
    old = os.umask(0o027)
    try:
        with atomic_folder(target) as folder:
            atomic_write_text(folder / "card.json", "{}")
        os.mkdir(tmp_path / "plain")
    finally:
        os.umask(old)
    assert _mode(target) == _mode(tmp_path / "plain") == 0o750
    assert _mode(target / "card.json") == 0o640
    with atomic_folder(target) as folder:
        (folder / "new.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["new.json"]
    with pytest.raises(RuntimeError), atomic_folder(target) as folder:
        (folder / "half.json").write_text("{")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package", "plain"]
    assert sorted(p.name for p in target.iterdir()) == ["new.json"]


def test_stale_temps_are_recognised_by_their_name_only(tmp_path: Path) -> None:
    from medisynth.files import remove_stale_temps, temp_target

    with atomic_path(tmp_path / "last.pt") as tmp:  # the name a real write uses
        assert temp_target(tmp.name) == "last.pt"
    for name in (".last.pt.a1b2c3d4.tmp.pt", ".other.pt.a1b2c3d4.tmp.pt", "last.pt", ".last.pt"):
        (tmp_path / name).write_text("x")
    removed = remove_stale_temps(tmp_path, lambda target: target == "last.pt")
    assert [p.name for p in removed] == [".last.pt.a1b2c3d4.tmp.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".last.pt",
        ".other.pt.a1b2c3d4.tmp.pt",
        "last.pt",
    ]
