"""The study folder: a SQLite database (WAL mode) and the blinded images named by opaque ids.

Layout of a study folder::

    study.sqlite      images, readers, answers, meta (the database)
    images/<id>.png   every image, re-encoded the same way (see :mod:`medisynth.study.create`)

Tables:

- ``images``: opaque random ``id``, ``truth`` (``real`` / ``synthetic``), class ``label`` (or
  NULL) and the index in its source set; never a path.
- ``readers``: ``name``, ``token_hash`` (sha256 of a random 32-byte token; the token itself is
  never stored) and ``seed`` of the reader's own image order.
- ``answers``: ``reader``, ``image``, ``answer`` (``real`` / ``synthetic``), ``confidence`` 1-5,
  ``comment``, ``time``; ``UNIQUE(reader, image)``, so a double submit cannot duplicate.
- ``meta``: the admin token's hash, the server's CSRF secret and ``sources``: what the real
  and the synthetic images were drawn from (size, type, fingerprint, and the model that
  generated a set medisynth wrote; never a path), so that ``medisynth validate --study`` can
  tell whether the study judged the sets it validates.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "study"
>>> conn = init_study(folder)
>>> add_image(conn, "ab12", "real", None, 3)
>>> token = add_reader(conn, "alice", seed=1)
>>> reader_for_token(conn, token), reader_for_token(conn, "wrong")
('alice', None)
>>> record_answer(conn, "alice", "ab12", "synthetic", 4, ""), next_image(conn, "alice")
(True, None)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from medisynth.errors import ConfigError, ReadError

DATABASE = "study.sqlite"
IMAGES = "images"
TRUTHS = ("real", "synthetic")
#: an image id: 16 lower-case hex digits (the only thing accepted in image routes)
IMAGE_ID = re.compile(r"[0-9a-f]{16}")
_READER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")

_SCHEMA = """
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    truth TEXT NOT NULL CHECK (truth IN ('real', 'synthetic')),
    label INTEGER,
    source_index INTEGER NOT NULL
);
CREATE TABLE readers (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    seed INTEGER NOT NULL
);
CREATE TABLE answers (
    reader TEXT NOT NULL REFERENCES readers(name),
    image TEXT NOT NULL REFERENCES images(id),
    answer TEXT NOT NULL CHECK (answer IN ('real', 'synthetic')),
    confidence INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    time TEXT NOT NULL,
    UNIQUE (reader, image)
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Answer:
    """One reader's answer on one image, with the image's truth and class label."""

    reader: str
    image: str
    truth: str
    label: int | None
    answer: str
    confidence: int
    comment: str
    time: str


def hash_token(token: str) -> str:
    """The sha256 hex digest stored for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh secret token (32 random bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def is_study(folder: str | Path) -> bool:
    """Whether ``folder`` holds a study database."""
    return (Path(folder) / DATABASE).is_file()


def init_study(folder: str | Path) -> sqlite3.Connection:
    """Create the database (and ``images/``) in ``folder``; returns an open connection."""
    folder = Path(folder)
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    conn = _connect(folder / DATABASE)
    conn.executescript(_SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('csrf_secret', ?)", (secrets.token_hex(32),))
    return conn


def open_study(folder: str | Path) -> sqlite3.Connection:
    """Open the study in ``folder``.

    Raises:
        ReadError: ``folder`` is not a study folder, or its database is not one.
    """
    if not is_study(folder):
        raise ReadError(
            folder, f"not a reader study (no {DATABASE})", "make one with `medisynth study create`"
        )
    conn = None
    try:
        conn = _connect(Path(folder) / DATABASE)
        conn.execute("SELECT 1 FROM images, readers, answers, meta LIMIT 0").fetchall()
    except sqlite3.Error as err:
        if conn is not None:
            conn.close()
        raise ReadError(
            Path(folder) / DATABASE,
            f"not a reader study's database ({err})",
            "give the folder that `medisynth study create` wrote",
        ) from err
    return conn


def record_sources(conn: sqlite3.Connection, sources: dict[str, dict[str, object]]) -> None:
    """Store what the images were drawn from, by truth (``real`` / ``synthetic``)."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('sources', ?)", (json.dumps(sources),))


def study_sources(conn: sqlite3.Connection) -> dict[str, dict[str, object]] | None:
    """What the images were drawn from (see :func:`record_sources`); None for a study made
    before medisynth recorded it."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'sources'").fetchone()
    return None if row is None else dict(json.loads(row[0]))


def add_image(
    conn: sqlite3.Connection, image_id: str, truth: str, label: int | None, source_index: int
) -> None:
    """Register one image."""
    conn.execute(
        "INSERT INTO images VALUES (?, ?, ?, ?)", (image_id, truth, label, int(source_index))
    )


def image_ids(conn: sqlite3.Connection) -> list[str]:
    """Every image id, sorted (a sort by random ids: no hint of truth or source order)."""
    return [row[0] for row in conn.execute("SELECT id FROM images ORDER BY id")]


def add_reader(conn: sqlite3.Connection, name: str, seed: int | None = None) -> str:
    """Register ``name`` (or give an existing reader a new token, invalidating the old one);
    returns the secret token, which only its hash is stored of.

    Raises:
        ConfigError: a name that is not 1-64 letters, digits, spaces, ``.``, ``_`` or ``-``.
    """
    if not _READER_NAME.fullmatch(name):
        raise ConfigError(
            f"reader name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-'"
        )
    token = new_token()
    if seed is None:
        seed = secrets.randbits(31)
    with conn:
        conn.execute("BEGIN")
        updated = conn.execute(
            "UPDATE readers SET token_hash = ? WHERE name = ?", (hash_token(token), name)
        ).rowcount
        if not updated:
            conn.execute("INSERT INTO readers VALUES (?, ?, ?)", (name, hash_token(token), seed))
    return token


def readers(conn: sqlite3.Connection) -> list[str]:
    """Every reader's name, sorted."""
    return [row[0] for row in conn.execute("SELECT name FROM readers ORDER BY name")]


def reader_for_token(conn: sqlite3.Connection, token: str) -> str | None:
    """The reader whose token this is, or None.

    Looked up by the token's sha256 (what a lookup's timing could reveal is about the hash,
    which tells nothing of a token), then compared in constant time."""
    given = hash_token(token)
    row = conn.execute(
        "SELECT name, token_hash FROM readers WHERE token_hash = ?", (given,)
    ).fetchone()
    return row[0] if row is not None and hmac.compare_digest(given, row[1]) else None


def set_admin_token(conn: sqlite3.Connection) -> str:
    """A new admin token (the old one stops working); only its hash is stored."""
    token = new_token()
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('admin_token_hash', ?)", (hash_token(token),))
    return token


def is_admin_token(conn: sqlite3.Connection, token: str) -> bool:
    """Whether ``token`` is the admin token."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'admin_token_hash'").fetchone()
    return row is not None and hmac.compare_digest(hash_token(token), row[0])


def csrf_token(conn: sqlite3.Connection, reader: str) -> str:
    """The reader's CSRF token: an HMAC of their token hash under the study's secret."""
    secret = conn.execute("SELECT value FROM meta WHERE key = 'csrf_secret'").fetchone()[0]
    stored = conn.execute("SELECT token_hash FROM readers WHERE name = ?", (reader,)).fetchone()
    return hmac.new(secret.encode(), stored[0].encode(), hashlib.sha256).hexdigest()


def reader_order(conn: sqlite3.Connection, reader: str) -> list[str]:
    """The reader's own seeded random order of every image."""
    seed = conn.execute("SELECT seed FROM readers WHERE name = ?", (reader,)).fetchone()[0]
    return list(_order(int(seed), tuple(image_ids(conn))))


@functools.lru_cache(maxsize=1024)
def _order(seed: int, ids: tuple[str, ...]) -> tuple[str, ...]:
    """``ids`` in the random order of ``seed`` (cached: the server asks on every request)."""
    return tuple(ids[i] for i in np.random.default_rng(seed).permutation(len(ids)))


def answered(conn: sqlite3.Connection, reader: str) -> set[str]:
    """The ids of the images ``reader`` has answered."""
    return {row[0] for row in conn.execute("SELECT image FROM answers WHERE reader = ?", (reader,))}


def next_image(conn: sqlite3.Connection, reader: str) -> str | None:
    """The first image in the reader's order they have not answered yet (None: done)."""
    done = answered(conn, reader)
    return next((i for i in reader_order(conn, reader) if i not in done), None)


def record_answer(
    conn: sqlite3.Connection,
    reader: str,
    image: str,
    answer: str,
    confidence: int,
    comment: str,
) -> bool:
    """Store an answer, committed before returning; False when the reader had already answered
    this image (the first answer stays)."""
    time = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cursor = conn.execute(
        "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
        (reader, image, answer, int(confidence), comment, time),
    )
    return cursor.rowcount == 1


def load_answers(conn: sqlite3.Connection) -> list[Answer]:
    """Every answer with its image's truth and label, ordered by reader then image."""
    rows = conn.execute(
        "SELECT a.reader, a.image, i.truth, i.label, a.answer, a.confidence, a.comment, a.time "
        "FROM answers a JOIN images i ON i.id = a.image ORDER BY a.reader, a.image"
    )
    return [Answer(*row) for row in rows]


def image_table(conn: sqlite3.Connection) -> list[tuple[str, str, int | None, int]]:
    """Rows ``(id, truth, label, source_index)`` of every image, sorted by id."""
    return list(conn.execute("SELECT id, truth, label, source_index FROM images ORDER BY id"))
