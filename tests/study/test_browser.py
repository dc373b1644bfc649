"""The reader study in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium through the system driver; nothing is downloaded) against
``medisynth study serve`` in its own process. Two readers answer a 12-image study at the same
time by keyboard; one reloads halfway and resumes; the server is killed with SIGKILL in the
middle and restarted on the same folder; ``study analyze`` then reports exactly the answers
given."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import medisynth
from medisynth.cli import main
from medisynth.study import store
from medisynth.study.create import create_study

from .conftest import phantoms, write_png_folder

pytestmark = pytest.mark.slow

TOTAL = 12  # images in the study
KILL_AT = 4  # the server is killed once both readers have answered this many
RELOAD_AT = 6  # ann reloads the page here
WAIT = 30.0  # seconds any one step may take
#: headless, no sandbox (containers), nothing fetched in the background, one pixel per CSS px
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--force-device-scale-factor=1", "--window-size=820,760",
)  # fmt: skip

#: what readers answer at step k: (answer key, confidence, comment)
PLANS = {
    "ann": [("s" if k % 3 else "r", 1 + k % 5, "odd noise" if k == 2 else "") for k in range(12)],
    "bob": [("r" if k % 2 else "s", 5 - k % 5, "too sharp" if k == 7 else "") for k in range(12)],
}


@dataclass
class Reader:
    """A reader in their own browser, and the answers the server acknowledged."""

    name: str
    link: str
    driver: Any
    given: dict[str, tuple[str, int, str]] = field(default_factory=dict)


class Server:
    """``medisynth study serve`` as a child process on a loopback port."""

    def __init__(self, study: Path, port: int, log: Path) -> None:
        self.study, self.port, self.log = study, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        source = str(Path(medisynth.__file__).resolve().parents[1])
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])
        }
        code = "import sys; from medisynth.cli import main; sys.exit(main())"
        args = ["study", "serve", str(self.study), "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, *args], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the server did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no checkpoint, nothing flushed by the server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=WAIT) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=WAIT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def chrome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A factory of headless Chromium sessions (skips where Chromium or its driver is absent)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless Chromium absent: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium absent (.[dev])")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download anything
    sessions = []

    def start(name: str) -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / ('chrome-' + name)}"):
            options.add_argument(flag)
        session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.quit()


def _shown(driver: Any, answered: int) -> str | None:
    """Wait until the page shows the image after ``answered`` answers, drawn; its id (None on
    the closing page)."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = """const i = document.querySelector('input[name=image]'),
        p = document.querySelector('progress'), c = document.getElementById('image');
        return [p ? p.value : -1, i && c && c.dataset.shown === 'yes' ? i.value : null,
                document.body.textContent.includes('All images answered')];"""

    def ready(d: Any) -> Any:
        done, image, closing = d.execute_script(script)
        return done == answered and (image or closing) and (image,)

    return WebDriverWait(driver, WAIT).until(ready)[0]


def _press(driver: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def _submit(driver: Any, comment: str) -> None:
    """Type the comment (if any), then submit with Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    if comment:
        driver.find_element(By.NAME, "comment").send_keys(comment, Keys.TAB)  # to the button
    _press(driver, Keys.ENTER)


_CHOSEN = """return ['answer', 'confidence'].map(
    (n) => document.querySelector(`input[name=${n}]:checked`)?.value ?? null);"""
_SET_WINDOW = """const [w, c] = arguments; ww.value = w; wc.value = c;
    ww.dispatchEvent(new Event('input')); wc.dispatchEvent(new Event('input'));
    const x = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    return Array.from(x.filter((_, i) => i % 4 === 0));"""


def _png_with_every_filter(pixels: np.ndarray) -> bytes:
    """A PNG of ``pixels`` (uint8 or uint16 grey, or uint8 RGB) whose rows cycle through the
    five PNG filter types (Pillow's encoder uses three of them)."""
    depth, colour = (16 if pixels.dtype == np.uint16 else 8), (2 if pixels.ndim == 3 else 0)
    data = np.ascontiguousarray(pixels.astype(">u2" if depth == 16 else np.uint8))
    rows = data.view(np.uint8).reshape(len(pixels), -1).astype(np.int64)
    step = (3 if colour == 2 else 1) * depth // 8
    stream, previous = b"", np.zeros_like(rows[0])
    for y, row in enumerate(rows):
        a, b = np.concatenate([np.zeros(step, np.int64), row[:-step]]), previous
        c = np.concatenate([np.zeros(step, np.int64), previous[:-step]])
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        predicted = [0 * a, a, b, (a + b) // 2, paeth][y % 5]
        stream += bytes([y % 5]) + ((row - predicted) % 256).astype(np.uint8).tobytes()
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(stream)) + chunk(b"IEND", b""))  # fmt: skip


def _check_decoder(driver: Any) -> None:
    """The page's PNG decoder gives the stored values of grey 8/16-bit and RGB PNGs, every row
    filter (checked against Pillow's reading of the same bytes)."""
    image = phantoms(1, 10, seed=2, noise=0.2)[0]
    for pixels in (
        np.rint(image * 65535).astype(np.uint16),
        np.rint(image * 255).astype(np.uint8),
        np.rint(np.stack([image, image.T, 1 - image], -1) * 255).astype(np.uint8),
    ):
        png = _png_with_every_filter(pixels)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)
        width, height, channels, values = driver.execute_async_script(
            """const done = arguments[arguments.length - 1];
            const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
            decodePng(bytes).then((p) => done([p.width, p.height, p.channels,
                                               Array.from(p.values)]));""",
            base64.b64encode(png).decode(),
        )
        top = 65535 if pixels.dtype == np.uint16 else 255
        assert (width, height, channels) == (10, 10, pixels.shape[2] if pixels.ndim == 3 else 1)
        decoded = np.rint(np.asarray(values) * top).reshape(pixels.shape)
        np.testing.assert_array_equal(decoded, pixels)


def _check_view(driver: Any, study: Path, image: str, shot: Path) -> None:
    """Native resolution, zoom x4 (two '+'), a screenshot; then a narrow window on the 16-bit
    image: the canvas shows what the stored 16-bit values give, not a stretched 8-bit
    rendering."""
    values = np.asarray(Image.open(study / store.IMAGES / f"{image}.png")).astype(np.float64)
    assert values.max() > 255  # a 16-bit image
    native = driver.execute_script("return [canvas.width, canvas.clientWidth]")
    _press(driver, "+", "+")
    zoomed = driver.execute_script("return [canvas.width, canvas.clientWidth]")
    assert native == [values.shape[1]] * 2 and zoomed == [values.shape[1], 4 * values.shape[1]]
    _check_decoder(driver)
    driver.execute_script(_SET_WINDOW, "0.8", "0.45")
    driver.save_screenshot(str(shot))
    width, level = "0.02", f"{np.median(values) / 65535:.3f}"
    drawn = driver.execute_script(_SET_WINDOW, width, level)
    low = float(level) - float(width) / 2
    expected = np.rint(np.clip((values / 65535 - low) / float(width), 0, 1) * 255)
    np.testing.assert_array_equal(np.reshape(drawn, values.shape), expected)
    assert len(np.unique(expected)) > 20  # an 8-bit source would give at most 7 levels here
    _press(driver, "0")  # reset
    assert driver.execute_script("return [ww.value, wc.value]") == ["1", "0.5"]


def _read(reader: Reader, barrier: threading.Barrier, study: Path, shots: Path | None) -> None:
    """Answer every image by keyboard; wait at the barrier (twice) while the server is killed
    and restarted; ann reloads the page at RELOAD_AT, bob reopens his link after the restart."""
    try:
        driver = reader.driver
        driver.get(reader.link)
        for step, (call, confidence, comment) in enumerate(PLANS[reader.name]):
            image, answer = _shown(driver, step), "synthetic" if call == "s" else "real"
            assert image is not None and image not in reader.given
            _press(driver, call, str(confidence))
            if step == KILL_AT:  # chosen on a page from before the crash
                barrier.wait(WAIT)  # the server is killed
                barrier.wait(WAIT)  # and restarted
                if reader.name == "bob":  # bob opens his link again: the same next image
                    driver.get(reader.link)
                    assert _shown(driver, step) == image
                    _press(driver, call, str(confidence))
            if step == RELOAD_AT and reader.name == "ann":
                assert driver.execute_script(_CHOSEN) == [answer, str(confidence)]  # keys chose
                driver.refresh()  # the choice made before the reload is not an answer
                assert _shown(driver, step) == image
                assert driver.execute_script(_CHOSEN) == [None, None]  # nor is it kept
                if shots is not None:
                    _check_view(driver, study, image, shots)
                _press(driver, call, str(confidence))
            _submit(driver, comment)
            reader.given[image] = (answer, confidence, comment)
        assert _shown(driver, TOTAL) is None
    except BaseException:
        barrier.abort()
        raise


def _make_study(folder: Path) -> Path:
    """A 12-image 16-bit study: noisy 'real' PNGs (64 px) and smooth 'synthetic' floats."""
    real = write_png_folder(folder / "real", phantoms(6, 64, seed=0, noise=0.05))
    np.save(folder / "synthetic.npy", phantoms(6, 64, seed=1, noise=0.01)[:, None] * 65535)
    create_study(real, str(folder / "synthetic.npy"), folder / "study", n=TOTAL, seed=0)
    return folder / "study"


def _invite(study: Path, base: str, capsys: pytest.CaptureFixture[str], name: str) -> str:
    assert main(["study", "invite", str(study), "--reader", name, "--base-url", base]) == 0
    return capsys.readouterr().out.strip()


def _stored(study: Path) -> dict[str, dict[str, tuple[str, int, str]]]:
    conn = store.open_study(study)
    try:
        stored: dict[str, dict[str, tuple[str, int, str]]] = {}
        for a in store.load_answers(conn):
            stored.setdefault(a.reader, {})[a.image] = (a.answer, a.confidence, a.comment)
        return stored
    finally:
        conn.close()


def _read_with_a_crash(readers: list[Reader], server: Server, study: Path, shots: Path) -> None:
    """The readers read in two threads; once both have answered KILL_AT images the server is
    killed, the database checked, and the server restarted on the same folder and port."""
    barrier = threading.Barrier(3)
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(_read, r, barrier, study, shots if r.name == "ann" else None)
            for r in readers
        ]
        try:
            barrier.wait(WAIT)  # both readers have answered KILL_AT images
            server.kill()
            acknowledged = {r.name: dict(r.given) for r in readers}
            assert _stored(study) == acknowledged  # nothing acknowledged is lost
            assert all(len(given) == KILL_AT for given in acknowledged.values())
            server.start()  # the same folder, the same port
            barrier.wait(WAIT)
        except BaseException as error:
            barrier.abort()
            for future in futures:  # a reader's own error explains a broken barrier
                if future.exception(timeout=4 * WAIT) is not None:
                    raise future.exception() from error
            raise
        for future in futures:
            future.result(timeout=4 * WAIT)


def test_two_readers_a_reload_and_a_killed_server(
    tmp_path: Path, chrome: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _make_study(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    readers = [Reader(n, _invite(study, base, capsys, n), chrome(n)) for n in ("ann", "bob")]
    server = Server(study, port, tmp_path / "server.log")
    shots = tmp_path / "reading_page.png"
    try:
        server.start()
        _read_with_a_crash(readers, server, study, shots)
    finally:
        server.stop()
    given = {r.name: r.given for r in readers}
    assert _stored(study) == given and all(len(g) == TOTAL for g in given.values())
    _check_report(study, tmp_path / "report", given)
    with Image.open(shots) as shot:
        assert shot.format == "PNG" and shot.size[0] > 400


def _check_report(
    study: Path, out: Path, given: dict[str, dict[str, tuple[str, int, str]]]
) -> None:
    """``study analyze`` reports exactly the answers given, and the accuracy they make."""
    assert main(["study", "analyze", str(study), "-o", str(out)]) == 0
    with (out / "answers.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    reported: dict[str, dict[str, tuple[str, int, str]]] = {}
    for row in rows:
        reported.setdefault(row["reader"], {})[row["image"]] = (
            row["answer"], int(row["confidence"]), row["comment"],
        )  # fmt: skip
    assert reported == given
    conn = store.open_study(study)
    truth = {image: t for image, t, _, _ in store.image_table(conn)}
    conn.close()
    report = json.loads((out / "report.json").read_text())
    for name, answers in given.items():
        correct = sum(call == truth[image] for image, (call, _, _) in answers.items())
        assert report["readers"][name]["n"] == TOTAL
        assert report["readers"][name]["correct"] == correct
    assert report["pooled"]["n"] == 2 * TOTAL
