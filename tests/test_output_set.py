"""Generated output folders: ``--overwrite`` deletes only what medisynth wrote inside the folder,
an interrupted run leaves a set every reader refuses, and the record names no user path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from medisynth.apply.generate import generate
from medisynth.cli import main
from medisynth.config import RunConfig
from medisynth.data.intensity import IntensityMap
from medisynth.data.sets import load_image_set
from medisynth.errors import ConfigError, MedisynthError
from medisynth.export.pacs import dicom_files
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo
from medisynth.output_set import RECORD, IncompleteSetError, OutputSet, check_complete
from medisynth.package import save_package


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-class DCGAN package (16x16 uint8)."""
    data = DataInfo(
        channels=1,
        spatial_shape=(16, 16),
        class_names=["malignant", "benign"],
        class_counts={0: 10, 1: 10},
        intensity_map=IntensityMap(0.0, 255.0, clip=False, kind="range"),
        source_dtype="uint8",
    )
    cfg = RunConfig.from_dict({"model": {"g_channels": 4, "latent_dim": 8}})
    torch.manual_seed(0)
    family = get_family("dcgan").build(cfg.model, data, training=False)
    return save_package(tmp_path_factory.mktemp("outsets") / "model", family, cfg)


def everything(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (links not followed), relative, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def edit_record(out: Path, **changes: object) -> None:
    record = json.loads((out / RECORD).read_text())
    record.update(changes)
    (out / RECORD).write_text(json.dumps(record))


# --------------------------------------------------------------------------- --overwrite
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "link", "labels_file"])
def test_overwrite_never_deletes_outside_the_folder(
    tmp_path: Path, model: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    generate(model, 2, out)
    victim = tmp_path / "victim" / "file.txt"
    victim.parent.mkdir()
    victim.write_text("keep")
    name = {
        "dotdot": "../victim/file.txt",
        "absolute": str(victim),
        "link": "link/file.txt",
        "labels_file": "malignant/../../victim/file.txt",
    }[kind]
    if kind == "link":
        (out / "link").symlink_to(victim.parent, target_is_directory=True)
    record = json.loads((out / RECORD).read_text())
    if kind == "labels_file":
        edit_record(out, labels_file=name)
    else:
        edit_record(out, files=[*record["files"], name])
    before = everything(out)
    code = main(["generate", str(model), "-n", "2", "-o", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert repr(name) in err and "nothing was deleted" in err
    assert victim.read_text() == "keep"
    assert everything(out) == before  # the whole list is checked before anything goes


def test_overwrite_refuses_a_record_it_cannot_trust(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    generate(model, 2, out)
    before = everything(out)
    args = ["generate", str(model), "-n", "2", "-o", str(out), "--overwrite"]
    (out / RECORD).write_text('{"files": ["malignant/synthetic_000001.png"')  # cut short
    assert main(args) == 2  # was an internal error (exit 3)
    assert "not a readable generation record" in capsys.readouterr().err
    (out / RECORD).write_text(json.dumps({"files": ["malignant/synthetic_000001.png"]}))
    assert main(args) == 2  # not medisynth's: no "synthetic": true
    assert "not a generation record medisynth wrote" in capsys.readouterr().err
    assert everything(out) == before


def test_overwrite_never_writes_over_a_file_the_record_does_not_list(
    tmp_path: Path, model: Path
) -> None:
    out = tmp_path / "out"
    generate(model, 2, out)  # malignant/synthetic_000001.png, benign/synthetic_000002.png
    stranger = out / "benign" / "synthetic_000004.png"  # a name the next set would use
    stranger.write_text("mine")
    before = everything(out)
    with pytest.raises(ConfigError, match="synthetic_000004.png exists.*does not list it"):
        generate(model, 4, out, overwrite=True)
    assert stranger.read_text() == "mine" and everything(out) == before


def test_overwrite_replaces_a_set_of_another_layout_and_an_old_record(
    tmp_path: Path, model: Path
) -> None:
    out = tmp_path / "out"
    generate(model, 3, out, fmt="png")
    # a record written before the status field, naming the package by its path
    record = json.loads((out / RECORD).read_text())
    for key in ("status", "model_id", "sha256"):
        record.pop(key, None)
    (out / RECORD).write_text(json.dumps({**record, "model": str(model), "out_dir": str(out)}))
    assert "model" not in main_info(out)  # an old record's path is not shown
    generate(model, 2, out, fmt="npz", overwrite=True)
    assert everything(out) == [RECORD, "synthetic.npz"]  # class folders and labels.csv gone


def main_info(out: Path) -> dict[str, object]:
    from medisynth.data.describe import describe

    return describe(out).fields


def test_record_names_the_model_not_its_folder(tmp_path: Path, model: Path) -> None:
    card = json.loads((model / "model_card.json").read_text())
    for fmt in ("png", "dicom"):
        out = tmp_path / fmt
        generate(model, 2, out, fmt=fmt)
        text = (out / RECORD).read_text()
        record = json.loads(text)
        assert record["model_id"] == card["model_id"] and record["status"] == "complete"
        assert str(tmp_path) not in text  # neither the package's nor the output's path


# --------------------------------------------------------------------------- interrupted runs
def test_an_error_while_writing_removes_what_was_written(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medisynth.export.png as png

    real = png.write_png
    calls: list[Path] = []

    def failing(path: Path, *args: object, **kwargs: object) -> None:
        calls.append(path)
        if len(calls) % 3 == 0:
            raise OSError("No space left on device")
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(png, "write_png", failing)
    user = tmp_path / "user"
    user.mkdir()  # a folder the user made stays, empty
    with pytest.raises(OSError, match="No space"):
        generate(model, 4, user)
    assert everything(user) == []
    with pytest.raises(OSError, match="No space"):
        generate(model, 4, tmp_path / "new")
    assert not (tmp_path / "new").exists()  # the folder medisynth made goes too


KILLED_RUN = """
import contextlib, os, sys
import medisynth.export.dicom as dicom
from medisynth.apply.generate import generate

real, calls = dicom.atomic_path, []

@contextlib.contextmanager
def dying(target):
    calls.append(target)
    with real(target) as tmp:
        yield tmp
        if len(calls) == 3:
            os._exit(9)  # killed after writing the third file's temp copy, before its rename

dicom.atomic_path = dying
generate(sys.argv[1], 5, sys.argv[2], fmt="dicom")
"""


def test_a_killed_run_is_refused_by_every_reader_and_overwrite_cleans_it(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = textwrap.dedent(KILLED_RUN)
    done = subprocess.run([sys.executable, "-c", script, str(model), str(out)], env=env)
    assert done.returncode == 9
    record = json.loads((out / RECORD).read_text())
    assert record["status"] == "incomplete" and len(record["files"]) == 5
    left = everything(out)
    assert "dicom/IM00002.dcm" in left and "dicom/IM00003.dcm" not in left
    assert any(name.startswith("dicom/.IM00003.dcm.") for name in left)  # the half-written one
    # validate, push and info see it is incomplete
    for spec in (out, out / "dicom"):
        with pytest.raises(IncompleteSetError, match="incomplete generated set.*--overwrite"):
            load_image_set(str(spec))
    with pytest.raises(IncompleteSetError):
        dicom_files([out / "dicom" / "IM00001.dcm"])
    assert main(["push", str(out / "dicom"), "--to", "dicom://PACS@127.0.0.1:9"]) == 2
    assert "incomplete generated set" in capsys.readouterr().err
    assert main(["info", str(out)]) == 0
    assert "INCOMPLETE" in capsys.readouterr().out
    # a new run into it: refused without --overwrite, and --overwrite cleans it (temp file too)
    args = ["generate", str(model), "-n", "4", "-f", "dicom", "-o", str(out)]
    assert main(args) == 2
    assert "incomplete generated set" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    files = [f"dicom/IM{i:05d}.dcm" for i in range(1, 5)]
    assert everything(out) == sorted([RECORD, "dicom", *files])
    check_complete(out)
    assert len(load_image_set(str(out / "dicom")).images) == 4
    assert len(dicom_files([out])) == 4


def test_a_sibling_of_an_incomplete_set_is_not_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputSet.begin(out, ["part/a.txt"]) as output:
        mine = out / "mine"
        mine.mkdir()
        check_complete(mine)  # not in the set
        with pytest.raises(MedisynthError, match="incomplete"):
            check_complete(out / "part")
        output.path("part/a.txt").parent.mkdir()
        output.path("part/a.txt").write_text("1")
        output.complete({})
    check_complete(out / "part")


def test_overwrite_never_writes_through_a_link_out_of_the_folder(
    tmp_path: Path, model: Path
) -> None:
    out = tmp_path / "out"
    generate(model, 2, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "malignant" / "synthetic_000001.png").unlink()
    (out / "malignant").rmdir()
    (out / "malignant").symlink_to(elsewhere, target_is_directory=True)  # a class folder
    with pytest.raises(ConfigError, match="'malignant/synthetic_000001.png', which leads out of"):
        generate(model, 2, out, overwrite=True)
    assert everything(elsewhere) == [] and (out / "benign" / "synthetic_000002.png").is_file()
