"""Answers are committed off the event loop: a slow disk does not stall other readers, answers
that arrive together share a transaction, and a bad answer fails alone."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from medisynth.study import store
from medisynth.study.app import create_app
from medisynth.study.writer import AnswerWriter

SLOW = 0.4  # seconds each commit of an answer takes in these tests


def _readers(study: Path, n: int) -> dict[str, str]:
    conn = store.open_study(study)
    tokens = {f"r{i}": store.add_reader(conn, f"r{i}", seed=i) for i in range(n)}
    conn.close()
    return tokens


def _slow_commits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make every stored answer take SLOW seconds (a slow disk); returns the start times."""
    original, starts = store.record_answer, []

    def slow(*args: Any) -> bool:
        starts.append(time.perf_counter())
        time.sleep(SLOW)
        return original(*args)

    monkeypatch.setattr(store, "record_answer", slow)
    return starts


async def _page(client: httpx.AsyncClient, token: str) -> tuple[str, str]:
    text = (await client.get(f"/r/{token}")).text
    image = re.search(r'name="image" value="([0-9a-f]{16})"', text)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', text)
    assert image and csrf
    return image[1], csrf[1]


def test_a_slow_commit_does_not_stall_other_readers(
    study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = _readers(study, 2)
    _slow_commits(monkeypatch)

    async def scenario() -> tuple[float, float, int, int]:
        transport = httpx.ASGITransport(app=create_app(study))
        async with httpx.AsyncClient(transport=transport, base_url="http://study") as client:
            image, csrf = await _page(client, tokens["r0"])
            other, _ = await _page(client, tokens["r1"])
            form = {"image": image, "csrf": csrf, "answer": "real", "confidence": "4"}

            async def answer() -> tuple[float, int]:
                start = time.perf_counter()
                response = await client.post(f"/r/{tokens['r0']}/answer", data=form)
                return time.perf_counter() - start, response.status_code

            async def look() -> tuple[float, int]:
                await asyncio.sleep(0.05)  # while the answer is being committed
                response = await client.get(f"/r/{tokens['r1']}/image/{other}")
                return time.perf_counter() - start, response.status_code

            start = time.perf_counter()
            (took, posted), (waited, got) = await asyncio.gather(answer(), look())
            return took, waited, posted, got

    took, waited, posted, got = asyncio.run(scenario())
    assert (posted, got) == (303, 200)
    assert took >= SLOW  # acknowledged once committed
    assert waited < SLOW / 2, f"the image came {waited:.3f} s late: it waited for a commit"
    conn = store.open_study(study)
    assert [(a.reader, a.answer, a.confidence) for a in store.load_answers(conn)] == [
        ("r0", "real", 4)
    ]


def test_answers_that_arrive_together_share_a_transaction(
    study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _readers(study, 6)
    writer = AnswerWriter(study)
    transactions: list[int] = []
    original = writer._transaction

    def slow(rows: list[Any]) -> list[bool]:  # a slow disk: each transaction takes SLOW / 2
        transactions.append(len(rows))
        time.sleep(SLOW / 2)
        return original(rows)

    monkeypatch.setattr(writer, "_transaction", slow)
    image = store.image_ids(store.open_study(study))[0]

    async def answer_all() -> list[bool]:
        first = asyncio.ensure_future(writer.record("r0", image, "synthetic", 2, ""))
        await asyncio.sleep(SLOW / 8)  # the first is being committed when the others arrive
        rest = [writer.record(f"r{i}", image, "real", 2, "") for i in range(1, 6)]
        return [await first, *await asyncio.gather(*rest)]

    assert asyncio.run(answer_all()) == [True] * 6
    assert transactions == [1, 5]  # two waits for the disk, not six
    conn = store.open_study(study)
    assert len(store.load_answers(conn)) == 6


def test_a_bad_answer_fails_alone(study: Path) -> None:
    _readers(study, 2)
    writer = AnswerWriter(study)
    image = store.image_ids(store.open_study(study))[0]

    async def answer_all() -> list[Any]:
        calls = [writer.record(name, image, "real", 3, "") for name in ("r0", "nobody", "r1")]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    first, unknown, last = asyncio.run(answer_all())
    assert first is True and last is True
    assert isinstance(unknown, sqlite3.IntegrityError)  # no such reader
    conn = store.open_study(study)
    assert sorted(a.reader for a in store.load_answers(conn)) == ["r0", "r1"]
