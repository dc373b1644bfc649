"""The error family of medisynth.

Every failure the user can cause (a bad file, a wrong option, an unknown name) raises a
:class:`MedisynthError` whose message says what was wrong, where, and what to do. The CLI prints
the message and exits with a non-zero status; it never shows a bare traceback for these.

>>> try:
...     raise ReadError("scan.nii.gz", "the file is truncated", "re-export or re-download it")
... except MedisynthError as err:
...     print(err)
scan.nii.gz: the file is truncated. re-export or re-download it
"""

from __future__ import annotations

from os import PathLike


class MedisynthError(Exception):
    """Base class of every error medisynth raises on purpose."""


class ReadError(MedisynthError):
    """A file or folder could not be read as a medical image.

    Args:
        path: the file or folder concerned.
        problem: what is wrong with it.
        hint: what the user can do about it.
    """

    def __init__(self, path: str | PathLike[str], problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        message = f"{self.path}: {problem}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


class UnsupportedFormatError(ReadError):
    """The file's format is unknown, or its content does not match its extension."""


class NonImageObjectError(ReadError):
    """A DICOM object that holds no image (segmentation, structured report, RT plan ...)."""


class SeriesError(ReadError):
    """A DICOM series is inconsistent: missing slices, mixed orientation or spacing."""


class ConfigError(MedisynthError):
    """A configuration value or key is invalid."""
