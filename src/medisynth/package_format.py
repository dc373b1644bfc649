"""Model package format versions, and the migrations that read packages of older versions.

Every package's model card names its format, ``medisynth-model-N``. A package of an older
version is read through the migrations from its version up to :data:`CURRENT`, in memory (the
files on disk are not rewritten); a package of a newer version, or of no known format, is
refused with what to do. A migration takes the card and the config (as parsed JSON / YAML,
before strict validation), so a renamed or removed config key is mapped here rather than
breaking older packages.

Versions:

1. medisynth 0.1.0: the config recorded the user's data paths and output folder; the card's
   data source could name a path.
2. No user path in a package: path settings are ``<not recorded>``, the data source gives a
   file count (see :meth:`medisynth.config.RunConfig.without_paths`).

>>> card, config = migrate(
...     {"format": "medisynth-model-1", "data": {"source": "MedMNIST npz /scans/a.npz"}},
...     {"data": {"path": "/scans/a.npz"}, "train": {"out_dir": "runs/a"}},
... )
>>> card["format"], card["data"]["source"], config["data"]["path"], config["train"]["out_dir"]
('medisynth-model-2', '<not recorded>', '<not recorded>', '<not recorded>')
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from medisynth.config import NOT_RECORDED
from medisynth.errors import ReadError

#: the format version this medisynth writes
CURRENT = 2
_PREFIX = "medisynth-model-"

Card = dict[str, Any]
ConfigData = dict[str, Any]


def format_name(version: int = CURRENT) -> str:
    """The card's ``format`` entry for ``version``.

    >>> format_name()
    'medisynth-model-2'
    """
    return f"{_PREFIX}{version}"


def format_version(card: Card, where: str = "the package") -> int:
    """The format version a card names; ReadError for an unknown or newer format."""
    name = card.get("format")
    match = re.fullmatch(rf"{_PREFIX}(\d+)", name) if isinstance(name, str) else None
    if match is None:
        raise ReadError(
            where,
            f"unsupported package format {name!r} (medisynth reads {format_name(1)} to "
            f"{format_name()})",
        )
    version = int(match.group(1))
    if version > CURRENT:
        raise ReadError(
            where,
            f"package format {name} is newer than this medisynth reads ({format_name()})",
            "upgrade medisynth (pip install --upgrade medisynth)",
        )
    if version < 1:
        raise ReadError(where, f"unsupported package format {name!r}")
    return version


def _v1_to_v2(card: Card, config: ConfigData) -> None:
    """Version 1 packages recorded the user's paths: leave them out, as version 2 writes."""
    data = config.get("data")
    if isinstance(data, dict):
        for key in ("path", "target_path", "mask_path"):
            if data.get(key) is not None:
                data[key] = NOT_RECORDED
        if data.get("labels") not in (None, "subfolders", "none"):
            data["labels"] = NOT_RECORDED
    train = config.get("train")
    if isinstance(train, dict) and "out_dir" in train:
        train["out_dir"] = NOT_RECORDED
    card_data = card.get("data")
    if isinstance(card_data, dict) and re.search(r"[/\\]", str(card_data.get("source", ""))):
        card_data["source"] = NOT_RECORDED


#: version N -> the migration from N to N + 1
MIGRATIONS: dict[int, Callable[[Card, ConfigData], None]] = {1: _v1_to_v2}


def migrate(card: Card, config: ConfigData, where: str = "the package") -> tuple[Card, ConfigData]:
    """Copies of ``card`` and ``config`` brought from the card's format to :data:`CURRENT`."""
    version = format_version(card, where)
    card, config = copy.deepcopy(card), copy.deepcopy(config)
    for step in range(version, CURRENT):
        MIGRATIONS[step](card, config)
    card["format"] = format_name()
    return card, config
