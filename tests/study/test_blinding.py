"""Blinding, tested as an attacker would: a classifier trained on everything a browser learns
about a served image except its pixels (the response's length, its headers, the image id, the
response time) must do no better than chance at telling real from synthetic. The same
classifier must find each planted leak, so the check can fail."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from medisynth.study import create, store
from medisynth.study.app import create_app

from .conftest import phantoms, write_png_folder

N = 60  # real and synthetic images each
ASGIApp = Callable[..., Any]


def _study(folder: Path) -> Path:
    """A study from sets that differ in everything but content: the real set is a folder of
    noisy 16-bit PNGs of 40 px with metadata, the synthetic set a float .npy of smooth 56 px
    images."""
    real = write_png_folder(folder / "real", phantoms(N, 40, seed=0, noise=0.08))
    np.save(folder / "synthetic.npy", phantoms(N, 56, seed=1, noise=0.0)[:, None] * 3000.0)
    create.create_study(real, str(folder / "synthetic.npy"), folder / "study", n=2 * N)
    return folder / "study"


def _fetch_all(study: Path, wrap: Callable[[ASGIApp, dict[str, str]], ASGIApp]) -> tuple:
    """Every image of ``study`` fetched once by a reader, in a random order, through the app
    wrapped by ``wrap``: the non-pixel features of each response and its truth."""
    conn = store.open_study(study)
    token = store.add_reader(conn, "ann", seed=3)
    truth = {image: t for image, t, _, _ in store.image_table(conn)}
    conn.close()
    client = TestClient(wrap(create_app(study), truth))
    ids = list(truth)
    np.random.default_rng(0).shuffle(ids)
    client.get(f"/r/{token}/image/{ids[0]}")  # warm up (first-request costs are not a leak)
    responses = []
    for image in ids:
        start = time.perf_counter()
        response = client.get(f"/r/{token}/image/{image}")
        seconds = time.perf_counter() - start
        assert response.status_code == 200
        responses.append((image, response, seconds))
    labels = np.array([truth[image] == "synthetic" for image in ids])
    return _features(responses), labels, responses


def _features(responses: list) -> np.ndarray:
    """One row per response: byte length, declared length, response time, the id (length, the
    values of its first and last 8 hex digits, the count of each digit), the header count and
    size, and one column per distinct header (name, value) pair but the length."""
    pairs = sorted(
        {(k, v) for _, r, _ in responses for k, v in r.headers.items() if k != "content-length"}
    )
    rows = []
    for image, response, seconds in responses:
        headers = set(response.headers.items())
        row = [len(response.content), int(response.headers["content-length"]), seconds]
        row += [len(image), int(image[:8], 16), int(image[-8:], 16)]
        row += [image.count(digit) for digit in "0123456789abcdef"]
        row += [len(headers), sum(len(k) + len(v) for k, v in headers)]
        row += [pair in headers for pair in pairs]
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def better_than_chance(features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Cross-validated accuracy of a random forest on ``features`` and the one-sided binomial
    p-value of that accuracy against chance (0.5, the classes are balanced)."""
    from scipy.stats import binomtest
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    forest = RandomForestClassifier(n_estimators=40, random_state=0, n_jobs=1)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    predicted = cross_val_predict(forest, features, labels, cv=folds)
    correct = int((predicted == labels).sum())
    return correct / len(labels), float(
        binomtest(correct, len(labels), alternative="greater").pvalue
    )


def _as_is(app: ASGIApp, truth: dict[str, str]) -> ASGIApp:
    return app


def _on_synthetic(
    app: ASGIApp, truth: dict[str, str], header: bytes | None = None, delay: float = 0.0
) -> ASGIApp:
    """``app`` with a leak on synthetic images: an extra header, or a delay."""

    async def leaky(scope: dict, receive: Any, send: Any) -> None:
        synthetic = truth.get(scope.get("path", "").rsplit("/", 1)[-1]) == "synthetic"
        if synthetic and delay:
            await asyncio.sleep(delay)

        async def send_leaky(message: dict) -> None:
            if synthetic and header and message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (header, b"1")]}
            await send(message)

        await app(scope, receive, send_leaky)

    return leaky


def test_served_images_tell_nothing_but_their_pixels(tmp_path: Path) -> None:
    features, labels, responses = _fetch_all(_study(tmp_path), _as_is)
    accuracy, p_value = better_than_chance(features, labels)
    assert p_value > 0.001, f"non-pixel features tell real from synthetic: accuracy {accuracy}"
    # the reasons, checked directly: one length, one set of headers, ids of one form
    assert len({len(r.content) for _, r, _ in responses}) == 1
    assert len({tuple(sorted(r.headers.items())) for _, r, _ in responses}) == 1
    assert not {"etag", "last-modified"} & set(responses[0][1].headers)
    assert {len(image) for image, _, _ in responses} == {16}


def _sequential_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = itertools.count()
    fake = SimpleNamespace(token_hex=lambda _n: f"{next(counter):016x}")
    monkeypatch.setattr(create, "secrets", fake)


@pytest.mark.parametrize(
    "leak",
    ["header on synthetic images", "slower synthetic images", "compressed PNGs", "sequential ids"],
)
def test_the_classifier_finds_a_planted_leak(
    leak: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrap = _as_is
    if leak == "header on synthetic images":
        wrap = lambda app, truth: _on_synthetic(app, truth, header=b"x-render")  # noqa: E731
    elif leak == "slower synthetic images":
        wrap = lambda app, truth: _on_synthetic(app, truth, delay=0.04)  # noqa: E731
    elif leak == "compressed PNGs":  # smooth images compress better: the length tells
        monkeypatch.setattr(create, "PNG_COMPRESS_LEVEL", 6)
    else:  # ids counted up in creation order (real first)
        _sequential_ids(monkeypatch)
    features, labels, _ = _fetch_all(_study(tmp_path), wrap)
    accuracy, p_value = better_than_chance(features, labels)
    assert accuracy > 0.8 and p_value < 1e-6, (leak, accuracy)
