"""The reader study web app: tokens, blinding, CSRF, escaping, durable answers, resume."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from medisynth.cli import main
from medisynth.study import store
from medisynth.study.app import create_app


@pytest.fixture
def tokens(study: Path) -> dict[str, str]:
    conn = store.open_study(study)
    result = {
        "ann": store.add_reader(conn, "ann", seed=1),
        "bob": store.add_reader(conn, "bob", seed=2),
        "admin": store.set_admin_token(conn),
    }
    conn.close()
    return result


def _client(study: Path) -> TestClient:
    return TestClient(create_app(study), follow_redirects=False)


def _current(page: str) -> tuple[str, str]:
    """The (image id, csrf token) of a reader page."""
    image = re.search(r'name="image" value="([0-9a-f]{16})"', page)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert image and csrf, page
    return image.group(1), csrf.group(1)


def _answer(client: TestClient, token: str, image_id: str, csrf: str, **extra: str) -> int:
    data = {"image": image_id, "csrf": csrf, "answer": "real", "confidence": "3"} | extra
    return client.post(f"/r/{token}/answer", data=data).status_code


def test_tokens_are_required(study: Path, tokens: dict[str, str]) -> None:
    client = _client(study)
    assert client.get("/").status_code == 200
    image, _ = _current(client.get(f"/r/{tokens['ann']}").text)
    for path in (
        "/r",
        "/r/",
        "/r/wrong",
        f"/r/{tokens['ann']}x",
        f"/r/wrong/image/{image}",
        f"/r//image/{image}",
        f"/image/{image}",
        "/admin/wrong",
        f"/admin/{tokens['ann']}",  # a reader's token is no admin token
        f"/r/{tokens['admin']}",  # nor is the admin token a reader's
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "image/png" not in response.headers.get("content-type", "")
    assert client.post("/r/wrong/answer", data={"image": image}).status_code == 404
    assert client.get(f"/admin/{tokens['admin']}").status_code == 200


def test_other_readers_token_and_csrf(study: Path, tokens: dict[str, str]) -> None:
    client = _client(study)
    image, ann_csrf = _current(client.get(f"/r/{tokens['ann']}").text)
    _, bob_csrf = _current(client.get(f"/r/{tokens['bob']}").text)
    assert ann_csrf != bob_csrf
    # bob's form token does not work for ann's answers, nor does none
    assert _answer(client, tokens["ann"], image, bob_csrf) == 403
    assert client.post(f"/r/{tokens['ann']}/answer", data={"image": image}).status_code == 403
    assert _answer(client, tokens["bob"], image, ann_csrf) == 403
    conn = store.open_study(study)
    assert store.load_answers(conn) == []
    # bob's token reaches bob's answers only
    assert _answer(client, tokens["bob"], image, bob_csrf) == 303
    assert [(a.reader, a.image) for a in store.load_answers(conn)] == [("bob", image)]
    assert image in store.answered(conn, "bob") and not store.answered(conn, "ann")


def test_image_routes_take_ids_only(study: Path, tokens: dict[str, str]) -> None:
    client = _client(study)
    base = f"/r/{tokens['ann']}/image/"
    for attempt in (
        "..%2F..%2Fstudy.sqlite",
        "../../study.sqlite",
        "..%2Fstudy.sqlite",
        "%2e%2e%2fstudy.sqlite",
        "0123456789abcdef",  # well formed, not in the study
        "0123456789ABCDEF",
        "study.sqlite",
    ):
        response = client.get(base + attempt)
        assert response.status_code == 404, attempt
        assert b"SQLite" not in response.content


def test_images_are_served_with_identical_headers(study: Path, tokens: dict[str, str]) -> None:
    client = _client(study)
    conn = store.open_study(study)
    headers = set()
    for image_id, _truth, _, _ in store.image_table(conn):
        response = client.get(f"/r/{tokens['ann']}/image/{image_id}")
        assert response.status_code == 200
        assert response.content == (study / store.IMAGES / f"{image_id}.png").read_bytes()
        headers.add(
            tuple(sorted((k, v) for k, v in response.headers.items() if k != "content-length"))
        )
    assert len(headers) == 1
    assert ("cache-control", "no-store") in next(iter(headers))


def test_comments_are_escaped(study: Path, tokens: dict[str, str]) -> None:
    client = _client(study)
    image, csrf = _current(client.get(f"/r/{tokens['ann']}").text)
    payload = "<script>alert(1)</script>"
    assert _answer(client, tokens["ann"], image, csrf, comment=payload) == 303
    page = client.get(f"/admin/{tokens['admin']}").text
    assert payload not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    conn = store.open_study(study)
    assert store.load_answers(conn)[0].comment == payload  # stored as given


def test_double_submit_and_bad_answers(study: Path, tokens: dict[str, str]) -> None:
    client = _client(study)
    image, csrf = _current(client.get(f"/r/{tokens['ann']}").text)
    assert _answer(client, tokens["ann"], image, csrf) == 303
    assert _answer(client, tokens["ann"], image, csrf, answer="synthetic") == 303
    conn = store.open_study(study)
    answers = store.load_answers(conn)
    assert len(answers) == 1 and answers[0].answer == "real"  # the first answer stays
    nxt, _ = _current(client.get(f"/r/{tokens['ann']}").text)
    bad_answers: list[dict[str, str]] = [
        {"answer": "maybe"}, {"confidence": "6"}, {"confidence": "x"}, {"image": "zz"},
        {"image": "0123456789abcdef"},
    ]  # fmt: skip
    for bad in bad_answers:
        assert _answer(client, tokens["ann"], nxt, csrf, **bad) == 400, bad
    assert len(store.load_answers(conn)) == 1


def test_order_resume_and_restart(study: Path, tokens: dict[str, str]) -> None:
    client = _client(study)
    conn = store.open_study(study)
    order = store.reader_order(conn, "ann")
    assert sorted(order) == store.image_ids(conn)
    assert order != store.reader_order(conn, "bob")  # each reader's own order
    for expected in order[:5]:
        page = client.get(f"/r/{tokens['ann']}").text
        image, csrf = _current(page)
        assert image == expected
        assert _answer(client, tokens["ann"], image, csrf) == 303
    # a "killed" server: a fresh app instance on the same folder (the first one is dropped)
    del client
    restarted = _client(study)
    page = restarted.get(f"/r/{tokens['ann']}").text
    assert _current(page)[0] == order[5]
    assert 'value="5" max="20"' in page
    fresh = store.open_study(study)
    assert [a.image for a in store.load_answers(fresh)] == sorted(order[:5])


def test_truth_never_reaches_the_reader(study: Path, tokens: dict[str, str]) -> None:
    # the page of every image is the same but for the image id and the progress
    client = _client(study)
    conn = store.open_study(study)
    truth = {i: t for i, t, _, _ in store.image_table(conn)}
    pages: dict[str, set[str]] = {"real": set(), "synthetic": set()}
    for step in range(20):
        page = client.get(f"/r/{tokens['ann']}").text
        image, csrf = _current(page)
        assert f'<progress value="{step}" max="20"></progress> {step} / 20' in page
        blank = re.sub(r"<progress[^>]*></progress> \d+ / \d+", "", page.replace(image, "ID"))
        pages[truth[image]].add(blank)
        assert _answer(client, tokens["ann"], image, csrf, answer="synthetic") == 303
    assert len(pages["real"]) == len(pages["synthetic"]) == 1
    assert pages["real"] == pages["synthetic"]
    done = client.get(f"/r/{tokens['ann']}").text
    assert "All images answered" in done and "correct" not in done.lower()


def test_invite_prints_links(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "invite", str(study), "--reader", "dr_x"]) == 0
    link = capsys.readouterr().out.strip()
    token = link.rsplit("/", 1)[1]
    assert link.startswith("http://127.0.0.1:8000/r/") and len(token) >= 43
    conn = store.open_study(study)
    assert store.reader_for_token(conn, token) == "dr_x"
    assert token not in "\n".join(conn.iterdump())  # only its hash is stored
    assert main(["study", "invite", str(study), "--admin"]) == 0
    admin = capsys.readouterr().out.strip().rsplit("/", 1)[1]
    assert store.is_admin_token(conn, admin)
    assert main(["study", "invite", str(study)]) == 2
    assert main(["study", "invite", str(study), "--reader", "<x>"]) == 2
