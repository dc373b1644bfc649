"""Names that may identify a patient: a check for class names taken from folder names or label
files before they go into a model package.

Folders of exported scans are often named after the patient (``DOE_JOHN_19600101``), a date or a
record number. Class names are written into the model card, so a name that looks like one of
these is refused and the user gives the class names in the config (``data.class_names``). The
check is a simple, documented heuristic, not a guarantee; it refuses a name with:

* a run of 4 or more digits (a year, a birth date, a record or accession number);
* a date written with separators (``01.02.60``, ``1960-01-01``, ``1/2/1960``);
* a ``^`` (the separator of DICOM person names, ``DOE^JOHN``);
* two or more words that start with a capital letter, or that are all in capitals, joined by
  ``_``, a space or a comma (``DOE_JOHN``, ``Doe, John``); lower-case words
  (``benign_tumour``) and single words pass.

>>> identifying_reason("pneumonia") is None
True
>>> identifying_reason("DOE_JOHN_19600101")
'it holds a run of 4 or more digits (a date or an ID?)'
"""

from __future__ import annotations

import re
from collections.abc import Callable

_DIGITS = re.compile(r"\d{4,}")
_DATE = re.compile(r"\d{1,4}[-./]\d{1,2}[-./]\d{1,4}")
_NAME_WORDS = re.compile(r"[A-Z][A-Za-z'-]*(?:[_ ,]+[A-Z][A-Za-z'-]*)+")

#: (test, reason) pairs, tried in order
_CHECKS: tuple[tuple[Callable[[str], object], str], ...] = (
    (_DIGITS.search, "it holds a run of 4 or more digits (a date or an ID?)"),
    (_DATE.search, "it looks like a date"),
    (lambda name: "^" in name, "it holds '^', the separator of DICOM person names"),
    (lambda name: _NAME_WORDS.fullmatch(name.strip()), "it looks like a person's name"),
)


def identifying_reason(name: str) -> str | None:
    """Why ``name`` may identify a patient, or ``None`` when it looks like an ordinary class
    name (the rules are in the module docstring)."""
    for test, reason in _CHECKS:
        if test(name):
            return reason
    return None
