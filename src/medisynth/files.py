"""Safe file writing: every output goes to a temp file in the same folder, then is renamed.

A crash or a kill while writing leaves either the old file or the new one, never half a file.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
>>> with atomic_path(target) as tmp:
...     _ = tmp.write_text("hello")
>>> target.read_text()
'hello'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    suffix = "".join(target.suffixes)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent
        )
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


def _mode_for(target: Path) -> int:
    """The mode ``target`` keeps (if it exists) or would get from ``open()`` (0o666 & ~umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))
