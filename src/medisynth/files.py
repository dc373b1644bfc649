"""Safe file writing: every output goes to a temp file in the same folder, then is renamed.

A crash or a kill while writing leaves either the old file or the new one, never half a file;
what it can leave is the temp file itself, named ``.<target>.<8 random>.tmp<target's suffixes>``
(:func:`temp_target` recognises the name, :func:`remove_stale_temps` clears them). Files get the
mode a plain ``open()`` would give them and folders the mode of ``mkdir()`` (the umask applies),
not the owner-only mode of temp files.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
>>> with atomic_path(target) as tmp:
...     _ = tmp.write_text("hello")
>>> target.read_text()
'hello'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

#: the name of a temp file or folder made by :func:`atomic_path` / :func:`atomic_folder`:
#: ``.<target>.<mkstemp's 8 random characters>.tmp<the target's suffixes>``
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(?:\.[^.]+)*)")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds.

    The temporary name keeps ``target``'s suffixes (``.nii.gz`` stays ``.nii.gz``) so libraries
    that choose a format by extension write the right one. The result gets the permissions a
    plain ``open()`` would give (an existing file's mode, else ``0o666`` less the umask), not the
    owner-only mode of temp files. On error the temp file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_affixes(target)
    try:
        fd, name = tempfile.mkstemp(suffix=suffix, prefix=prefix, dir=target.parent)
    except OSError as err:  # name the file asked for, not the temporary one
        raise OSError(err.errno, err.strerror, str(target)) from err
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new empty folder beside ``target``; if the block succeeds it replaces ``target``
    (an existing ``target`` folder is moved aside, then deleted), else it is removed.

    The caller decides whether an existing ``target`` may be replaced. The folder gets the mode
    ``mkdir()`` gives (``0o777`` less the umask).

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "package"
    >>> with atomic_folder(target) as folder:
    ...     _ = (folder / "a.txt").write_text("a")
    >>> sorted(p.name for p in target.iterdir())
    ['a.txt']
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_affixes(target)
    staging = Path(tempfile.mkdtemp(suffix=suffix, prefix=prefix, dir=target.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        old = None
        if target.exists():
            # a free name to move it to: an empty folder, which a POSIX rename replaces
            old = Path(tempfile.mkdtemp(suffix=suffix, prefix=prefix, dir=target.parent))
            os.replace(target, old)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _temp_affixes(target: Path) -> tuple[str, str]:
    """The prefix and suffix of ``target``'s temp names (see :data:`_TEMP_NAME`)."""
    return f".{target.name}.", f".tmp{''.join(target.suffixes)}"


def temp_target(name: str) -> str | None:
    """The target a temp file (or folder) of :func:`atomic_path` / :func:`atomic_folder` was
    for, from its name; ``None`` for any other name.

    >>> temp_target(".last.pt.k2j4h6g8.tmp.pt"), temp_target(".model.a1b2c3d4.tmp")
    ('last.pt', 'model')
    >>> temp_target("last.pt"), temp_target(".last.pt.notes"), temp_target(".a.txt.x1y2z3w4.tmp.pt")
    (None, None, None)
    """
    match = _TEMP_NAME.fullmatch(name)
    if match is None or "".join(Path(match["target"]).suffixes) != match["suffix"]:
        return None
    return match["target"]


def remove_stale_temps(
    folder: str | os.PathLike[str], is_ours: Callable[[str], bool]
) -> list[Path]:
    """Delete the temp files and folders that writes into ``folder`` left behind when they were
    killed, for the targets ``is_ours(target name)`` accepts; returns what was removed.

    Only call it when no write into ``folder`` can be under way (before a run starts).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        target = temp_target(path.name)
        if target is None or not is_ours(target):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _mode_for(target: Path) -> int:
    """The mode ``target`` keeps (if it exists) or would get from ``open()`` (0o666 & ~umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file's bytes.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = path.write_text("synthetic")
    >>> file_sha256(path)[:12]
    'b3cc0475bb78'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
