"""The run folder (``train.out_dir``): what medisynth writes there, and the rules for starting in
a folder that already holds a run.

* A new run (neither resume nor overwrite) needs a folder without a run: training into a run
  would replace its checkpoint and model and mix two runs in ``metrics.jsonl``
  (:func:`check_run_folder`, before anything is read or written).
* ``resume`` continues the run; ``overwrite`` removes the files medisynth wrote there (and only
  those: a user's own files stay) once the new run is ready to write (:func:`clear_run_folder`).
* Either way, temp files left by writes that were killed are removed then.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> _ = (out / "metrics.jsonl").write_text('{"step": 1}\\n')
>>> _ = (out / "notes.txt").write_text("mine")
>>> run_files(out)
['metrics.jsonl']
>>> check_run_folder(out, resume=False, overwrite=True)
>>> clear_run_folder(out, overwrite=True)
>>> sorted(p.name for p in out.iterdir())
['notes.txt']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from medisynth.errors import ConfigError
from medisynth.files import remove_stale_temps, temp_target

CHECKPOINTS = "checkpoints"
CHECKPOINT_NAME = "last.pt"
SAMPLES = "samples"
MODEL = "model"
TENSORBOARD = "tensorboard"
#: the files medisynth writes at the top of a run folder
TOP_FILES = ("config.yaml", "metrics.jsonl", "train_summary.json")

_SAMPLE = re.compile(r"step_\d+\.png")
_EVENTS = re.compile(r"events\.out\.tfevents\..+")


def _package_files() -> tuple[str, ...]:
    from medisynth import package

    return (package.WEIGHTS, package.CONFIG, package.INTENSITY, package.CARD_JSON, package.CARD_MD)


def _ours(out: Path) -> dict[Path, Callable[[str], bool]]:
    """Each folder of a run, with the test of the names medisynth writes into it."""
    package_files = _package_files()
    return {
        out: lambda name: name in TOP_FILES or name == MODEL,
        out / CHECKPOINTS: lambda name: name == CHECKPOINT_NAME,
        out / SAMPLES: lambda name: _SAMPLE.fullmatch(name) is not None,
        out / MODEL: lambda name: name in package_files,
        out / TENSORBOARD: lambda name: _EVENTS.fullmatch(name) is not None,
    }


def run_files(out: str | Path) -> list[str]:
    """The files of a run that ``out`` holds (relative names; empty for a new folder)."""
    out = Path(out)
    found = []
    for folder, is_ours in _ours(out).items():
        if folder.is_dir():
            found += [
                str(p.relative_to(out))
                for p in sorted(folder.iterdir())
                if p.is_file() and is_ours(p.name)
            ]
    return found


def is_package(folder: Path) -> bool:
    from medisynth.package import CARD_JSON

    return (folder / CARD_JSON).is_file()


def check_run_folder(out: str | Path, resume: bool, overwrite: bool) -> None:
    """Raise :class:`~medisynth.errors.ConfigError` when a new (neither ``resume`` nor
    ``overwrite``), resumed or overwritten run may not start in ``out``; changes nothing."""
    out = Path(out)
    if resume and overwrite:
        raise ConfigError(
            "--resume continues the run in train.out_dir and --overwrite replaces it; give one"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"train.out_dir {out} is a file, not a folder; choose another out_dir")
    model = out / MODEL
    if model.exists() and not is_package(model):
        raise ConfigError(
            f"{model} exists and is not a medisynth model package, and training writes its "
            "package there; move it away or choose another train.out_dir"
        )
    foreign = _foreign_entries(model)
    if foreign:  # the new package replaces the whole folder: they would go with the old one
        raise ConfigError(
            f"{model} holds files that are not part of a model package ({', '.join(foreign[:3])})"
            ", and training replaces that folder; move them away"
        )
    found = run_files(out)
    if found and not resume and not overwrite:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise ConfigError(
            f"{out} already holds a training run ({shown}); continue it with --resume, replace "
            "it with --overwrite (Python: fit(resume=True) or fit(overwrite=True)), or set "
            "another train.out_dir"
        )


def clear_run_folder(out: str | Path, overwrite: bool) -> None:
    """Remove the temp files of killed writes and, with ``overwrite``, the earlier run's files
    (only those medisynth writes) from a folder :func:`check_run_folder` accepted."""
    out = Path(out)
    for folder, is_ours in _ours(out).items():
        remove_stale_temps(folder, is_ours)
    if overwrite:
        _remove_run(out)


def _foreign_entries(model: Path) -> list[str]:
    """What a package folder holds besides package files and their temp files."""
    if not model.is_dir():
        return []
    package_files = _package_files()
    return [
        p.name
        for p in sorted(model.iterdir())
        if p.name not in package_files and temp_target(p.name) not in package_files
    ]


def _remove_run(out: Path) -> None:
    """Delete the files medisynth wrote in ``out``, and its sub-folders once they are empty."""
    for folder, is_ours in _ours(out).items():
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and is_ours(path.name):
                path.unlink()
        if folder != out and not any(folder.iterdir()):
            folder.rmdir()
    # TensorBoard may nest a folder per writer: their events files, then the emptied folders
    tensorboard = out / TENSORBOARD
    if tensorboard.is_dir():
        for path in sorted(tensorboard.rglob("*"), reverse=True):
            if path.is_file() and _EVENTS.fullmatch(path.name):
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if not any(tensorboard.iterdir()):
            tensorboard.rmdir()
