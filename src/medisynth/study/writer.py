"""Answers committed off the server's event loop, several in one transaction when they arrive
together (group commit).

Every commit waits for the disk (``synchronous=FULL``: an acknowledged answer survives a crash
of the machine, not only of the server). Done on the event loop, that wait stalled every other
request; here a worker thread commits, with a connection of its own (WAL: the server's reads do
not wait for it), and the answers that arrived meanwhile go into the next transaction, so many
readers share one disk wait. :meth:`AnswerWriter.record` returns once its answer is committed.

>>> import asyncio, tempfile, pathlib
>>> from medisynth.study import store
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "study"
>>> conn = store.init_study(folder)
>>> store.add_image(conn, "ab12", "real", None, 0)
>>> _ = store.add_reader(conn, "ann", seed=1)
>>> writer = AnswerWriter(folder)
>>> async def twice():
...     first = writer.record("ann", "ab12", "real", 3, "")
...     return await asyncio.gather(first, writer.record("ann", "ab12", "synthetic", 5, ""))
>>> asyncio.run(twice()), [a.answer for a in store.load_answers(conn)]
([True, False], ['real'])
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import anyio.to_thread

from medisynth.study import store

#: one answer: reader, image id, answer, confidence, comment
Row = tuple[str, str, str, int, str]


class AnswerWriter:
    """Commits the answers of a study (see the module doc)."""

    def __init__(self, folder: str | Path) -> None:
        self._conn = store.open_study(folder)
        self._pending: list[tuple[Row, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(
        self, reader: str, image: str, answer: str, confidence: int, comment: str
    ) -> bool:
        """Store an answer; returns once it is committed: True, or False when the reader had
        already answered this image (the first answer stays).

        Raises:
            sqlite3.Error: the answer could not be stored.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append(((reader, image, answer, confidence, comment), future))
        flusher = self._flusher
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        """Commit what is pending, batch after batch, until nothing is."""
        while self._pending:
            batch, self._pending = self._pending, []
            rows = [row for row, _ in batch]
            try:
                outcomes = await anyio.to_thread.run_sync(self._commit, rows)
            except Exception as err:  # never leave a request waiting
                outcomes = [err] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done() or future.get_loop().is_closed():
                    continue  # the request went away; its answer is stored anyway
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _commit(self, rows: list[Row]) -> list[bool | Exception]:
        """One transaction for all ``rows``; when it fails, one per row, so that a bad answer
        fails alone."""
        try:
            return list(self._transaction(rows))
        except sqlite3.Error:
            outcomes: list[bool | Exception] = []
            for row in rows:
                try:
                    outcomes.extend(self._transaction([row]))
                except sqlite3.Error as err:
                    outcomes.append(err)
            return outcomes

    def _transaction(self, rows: list[Row]) -> list[bool]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored = [store.record_answer(conn, *row) for row in rows]
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return stored

    def close(self) -> None:
        """Close its connection (after the last answer was committed)."""
        self._conn.close()
