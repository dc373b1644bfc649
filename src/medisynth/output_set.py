"""One writer for generated output folders: never over other files, complete or marked incomplete.

Every generated set (``medisynth generate``, ``--masks``, ``--size``) is written by an
:class:`OutputSet`:

1. :meth:`OutputSet.begin` checks the folder (new, empty, or an earlier generated set when
   ``overwrite``), then writes ``generation.json`` saying ``"status": "incomplete"`` and listing
   every file the set will hold, *before* any of them;
2. the caller writes those files at :meth:`OutputSet.path` (each one atomically, see
   :mod:`medisynth.files`) and the labels with :meth:`OutputSet.write_labels`;
3. :meth:`OutputSet.complete` checks they are all there and rewrites ``generation.json`` with
   ``"status": "complete"`` and the sha256 of every file (what ``medisynth export`` verifies),
   last.

A run stopped by an exception (an error, Ctrl-C) inside ``with OutputSet.begin(...)`` removes
what it wrote. A killed run leaves a folder whose record says incomplete: readers refuse it
(:func:`check_complete`) and ``overwrite`` cleans it. ``overwrite`` deletes only the files a
medisynth record lists, inside the folder (no absolute paths, no ``..``, no links), and the
hidden temporary files medisynth's atomic writes leave beside them; it checks the whole list
before deleting anything. A folder without a record (or with files it does not list in the way)
is never written into unless it is empty.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "set"
>>> with OutputSet.begin(out, ["x.txt"], labels_file=LABELS) as output:
...     _ = output.path("x.txt").write_text("1")  # real writers write atomically
...     status = read_record(out)["status"]
...     output.write_labels([("file", "label"), ("x.txt", "0")])
...     record = output.complete({"format": "txt", "count": 1})
>>> status, read_record(out)["status"], read_record(out)["files"]
('incomplete', 'complete', ['x.txt'])
>>> check_complete(out)  # complete: no error
>>> output_dtype("int16"), output_dtype("float64")
('int16', 'float32')
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import TracebackType
from typing import Any

from medisynth.errors import ConfigError, ReadError
from medisynth.files import atomic_write_text, file_sha256, temp_target

log = logging.getLogger(__name__)

RECORD = "generation.json"
#: The record's map of every written file (relative name) to its sha256: what export verifies.
DIGESTS = "sha256"
LABELS = "labels.csv"
COMPLETE = "complete"
INCOMPLETE = "incomplete"
#: stored types generated images keep; anything else is written as float32
INTEGER_TYPES = ("uint8", "uint16", "int16")
# the tiled generator's scratch memmaps beside a volume it writes (tempfile's 8 random characters)
_SCRATCH_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.f32")


class OutputFolderError(ConfigError):
    """The output folder cannot be written (or replaced) safely."""


class IncompleteSetError(ReadError):
    """A generated set whose writing did not finish (the run was interrupted or killed)."""


@dataclass
class GenerateResult:
    """What a generated set holds (returned by ``medisynth.apply.generate.generate``)."""

    out_dir: str
    format: str
    count: int
    class_counts: dict[str, int]
    files: list[str] = field(default_factory=list)
    labels_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def output_dtype(source_dtype: str) -> str:
    """The stored type of generated images: the source's integer type, else ``float32``."""
    return source_dtype if source_dtype in INTEGER_TYPES else "float32"


def model_name(card: Mapping[str, Any]) -> str:
    """How records and file headers name a model: its package's ``model_id``
    (``<family>-<weights hash>``), never its folder.

    >>> model_name({"model_id": "dcgan-0123456789ab", "family": "dcgan"})
    'dcgan-0123456789ab'
    """
    return str(card.get("model_id") or card.get("family") or "unknown")


# ----------------------------------------------------------------------------- records
def read_record(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The generation record of ``folder``, or None when it has none.

    Records written before the ``status`` field count as complete.

    Raises:
        OutputFolderError: ``generation.json`` is unreadable or not a record medisynth wrote.
    """
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OutputFolderError(
            f"{path}: not a readable generation record ({err}); nothing was changed. Choose "
            "a new output folder, or check the folder and empty it by hand"
        ) from err
    files = record.get("files") if isinstance(record, dict) else None
    labels = record.get("labels_file") if isinstance(record, dict) else None
    if (
        not isinstance(record, dict)
        or record.get("synthetic") is not True
        or not isinstance(files, list)
        or not all(isinstance(name, str) for name in files)
        or not (labels is None or isinstance(labels, str))
        or record.get("status", COMPLETE) not in (COMPLETE, INCOMPLETE)
    ):
        raise OutputFolderError(
            f"{path}: not a generation record medisynth wrote (it needs 'synthetic': true, a "
            "'files' list and a known 'status'); nothing was changed. Choose a new output "
            "folder, or check the folder and empty it by hand"
        )
    record.setdefault("status", COMPLETE)
    return record


def _listed(record: dict[str, Any]) -> list[str]:
    """Every file a record lists (images and the labels file)."""
    names = list(record["files"])
    if record.get("labels_file"):
        names.append(record["labels_file"])
    return names


def check_complete(path: str | os.PathLike[str]) -> None:
    """Refuse ``path`` when it is, or lies in, a generated set whose writing did not finish.

    Looks at ``path`` (a folder) and the two folders above it, the depth of every layout
    medisynth writes (``OUT/<class>/file``, ``OUT/dicom/file``).

    Raises:
        IncompleteSetError: the set's record says incomplete and lists files under ``path``.
    """
    path = Path(path).absolute()
    folders = ([path] if path.is_dir() else []) + list(path.parents)[:2]
    for folder in folders:
        try:
            record = read_record(folder)
        except OutputFolderError:
            continue  # someone else's generation.json: not ours to judge
        if record is None or record["status"] != INCOMPLETE:
            continue
        inner = path.relative_to(folder).as_posix()
        if inner == "." or any(
            name == inner or name.startswith(inner + "/") for name in _listed(record)
        ):
            raise IncompleteSetError(
                folder,
                "an incomplete generated set (`medisynth generate` was interrupted before it "
                "finished writing it)",
                "generate it again into this folder with --overwrite, or use a complete set",
            )


# ----------------------------------------------------------------------------- safe paths
def _member(folder: Path, name: str, source: str) -> Path:
    """``folder / name`` when ``name`` is a plain relative path that stays inside ``folder``
    (``source`` says where the name comes from, for the message)."""

    def refuse(why: str) -> OutputFolderError:
        return OutputFolderError(
            f"{source} {name!r}, {why}; --overwrite deletes and writes only files inside "
            f"{folder}, so nothing was deleted. Check the folder and empty it by hand, or "
            "choose a new output folder"
        )

    pure = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or pure.is_absolute()
        or PureWindowsPath(name).drive
        or any(part in ("..", ".") for part in name.split("/"))
        or name == RECORD
    ):
        raise refuse("which is not a file name inside the folder")
    path = folder / pure
    try:
        inside = path.resolve().relative_to(folder.resolve())
    except ValueError:
        raise refuse("which leads out of the folder (through a link)") from None
    if inside == Path("."):
        raise refuse("which is the folder itself")
    if path.is_symlink():
        raise refuse("which is a link (medisynth writes plain files)")
    if path.exists() and not path.is_file():
        raise refuse("which is not a file")
    return path


def _temp_files(paths: Iterable[Path]) -> list[Path]:
    """Hidden temp files that writes of ``paths`` left beside them (a killed run): the atomic
    writer's (:func:`medisynth.files.temp_target`) and the tiled generator's scratch memmaps
    (``.<name>.<8 random characters>.f32``) in the same folder."""
    wanted: dict[Path, set[str]] = {}
    for path in paths:
        wanted.setdefault(path.parent, set()).add(path.name)
    found = []
    for parent, names in wanted.items():
        if not parent.is_dir() or parent.is_symlink():
            continue
        for entry in parent.iterdir():
            if entry.is_symlink() or not entry.is_file():
                continue
            scratch = _SCRATCH_NAME.fullmatch(entry.name)
            target = temp_target(entry.name) or (scratch["target"] if scratch else None)
            if target in names:
                found.append(entry)
    return sorted(found)


def _remove(paths: Iterable[Path], folder: Path) -> bool:
    """Delete ``paths`` and then any of their folders (below ``folder``) left empty."""
    ok = True
    parents: set[Path] = set()
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            log.warning("could not delete %s: %s", path, err)
            ok = False
        parents.update(p for p in path.parents if p != folder and folder in p.parents)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            parent.rmdir()  # only succeeds when empty
    return ok


# ----------------------------------------------------------------------------- the writer
class OutputSet:
    """A generated set being written into one folder (see the module doc).

    Make one with :meth:`begin`; use it as a context manager so that an exception removes what
    was written.
    """

    def __init__(
        self, folder: Path, files: Sequence[str], labels_file: str | None, created: bool
    ) -> None:
        self.folder = folder
        self.files = list(files)
        self.labels_file = labels_file
        self.created = created
        self.done = False

    @classmethod
    def begin(
        cls,
        out: str | os.PathLike[str],
        files: Sequence[str],
        *,
        labels_file: str | None = None,
        overwrite: bool = False,
    ) -> OutputSet:
        """Prepare ``out`` for a set of ``files`` (paths relative to it, ``/``-separated).

        ``out`` must be new, empty, or (with ``overwrite``) hold an earlier generated set, whose
        listed files are deleted after every one of them is checked. The record saying
        incomplete is written before this returns.

        Raises:
            OutputFolderError: ``out`` is a file, holds other files, or its record is unreadable
                or lists a path outside it (then nothing is deleted).
        """
        folder = Path(out)
        own = [*files, *([labels_file] if labels_file else [])]
        if len(set(own)) != len(own):
            raise ValueError("the planned file names repeat")
        if folder.exists() and not folder.is_dir():
            raise OutputFolderError(f"{folder} exists and is not a folder; choose a folder")
        created = not folder.exists()
        earlier: list[str] = []
        doomed: list[Path] = []
        if folder.is_dir() and any(folder.iterdir()):
            record_path = folder / RECORD
            if not record_path.is_file():
                raise OutputFolderError(
                    f"{folder} is not empty and holds no generated set; choose a new output "
                    "folder (medisynth never writes over files it did not write)"
                )
            if not overwrite:
                try:
                    state = read_record(folder)
                except OutputFolderError:
                    state = None
                what = "an incomplete" if state and state["status"] == INCOMPLETE else "a"
                raise OutputFolderError(
                    f"{folder} is not empty: it holds {what} generated set; choose a new output "
                    "folder (or --overwrite to replace an earlier generated set)"
                )
            record = read_record(folder)
            assert record is not None
            earlier = _listed(record)
            listing = f"{record_path} lists"
            old = {name: _member(folder, name, listing) for name in earlier}
            for name in own:
                path = _member(folder, name, "the new set would write")
                if name not in old and (path.exists() or path.is_symlink()):
                    raise OutputFolderError(
                        f"{path} exists and {record_path} does not list it; medisynth never "
                        "writes over files it did not write. Move it away or choose a new "
                        "output folder"
                    )
            doomed = [path for path in old.values() if path.is_file()]
            doomed += _temp_files([*old.values(), record_path])
        else:
            folder.mkdir(parents=True, exist_ok=True)
        output = cls(folder, files, labels_file, created)
        # the record covers the earlier set's files too until they are gone
        pending = list(files) + [name for name in earlier if name not in own]
        output._write_record(
            {
                "status": INCOMPLETE,
                "note": "being written by medisynth; if this stays, the run was interrupted: "
                "generate again with --overwrite",
                "files": pending,
                "labels_file": labels_file,
                "synthetic": True,
            }
        )
        if doomed:
            _remove(doomed, folder)
            log.info("removed %d files of the earlier generated set in %s", len(doomed), folder)
        return output

    def path(self, name: str) -> Path:
        """Where to write the planned file ``name``."""
        if name not in self.files:
            raise ValueError(f"{name!r} is not one of the planned files")
        return self.folder / name

    def write_labels(self, rows: Iterable[Sequence[str]]) -> None:
        """Write the labels file (CSV rows, the header first)."""
        if not self.labels_file:
            raise ValueError("this set was begun without a labels file")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        atomic_write_text(self.folder / self.labels_file, buffer.getvalue())

    def complete(self, details: dict[str, Any]) -> dict[str, Any]:
        """Check every planned file is written, then write the record saying complete.

        ``details`` (how the set was made: format, counts, model id, seed ...) go into the
        record; ``files``, ``labels_file``, ``synthetic`` and ``status`` are set here. Returns
        the record.
        """
        names = [*self.files, *([self.labels_file] if self.labels_file else [])]
        missing = [name for name in names if not (self.folder / name).is_file()]
        if missing:
            raise RuntimeError(
                f"{self.folder}: {len(missing)} planned file(s) were not written, e.g. {missing[0]}"
            )
        record = {"status": COMPLETE, **details}
        record.update(files=self.files, labels_file=self.labels_file, synthetic=True)
        record[DIGESTS] = {name: file_sha256(self.folder / name) for name in names}
        self._write_record(record)
        self.done = True
        return record

    def abandon(self) -> None:
        """Remove what this run wrote (the record last, and only if everything else went)."""
        names = [*self.files, *([self.labels_file] if self.labels_file else [])]
        paths = [self.folder / name for name in names]
        planned = [p for p in paths if p.is_file() and not p.is_symlink()]
        if _remove(planned, self.folder):
            _remove([self.folder / RECORD], self.folder)
            if self.created:
                with contextlib.suppress(OSError):
                    self.folder.rmdir()

    def _write_record(self, record: dict[str, Any]) -> None:
        atomic_write_text(self.folder / RECORD, json.dumps(record, indent=2) + "\n")

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is not None and not self.done:
            try:
                self.abandon()
            except OSError as err:  # the incomplete record stays: readers refuse the set
                log.warning("could not clean up %s: %s", self.folder, err)
