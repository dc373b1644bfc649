"""The reader-study server under load: concurrent simulated readers over loopback.

Makes a study of tiny images (``--images``, half real, half synthetic, 28x28 8-bit), invites
``--readers`` readers, serves it with ``medisynth study serve`` (a subprocess on a free port of
127.0.0.1, as readers meet it) and lets every reader follow the app's real flow at once, each on
its own connection (asyncio + httpx): GET their page, read the image id and the form's CSRF token
from it, GET the image, POST the answer (303 to the next page), until they have answered every
image (``--readers`` x ``--images`` answers: 50 x 40 = 2,000 by default) or ``--timeout``
seconds have passed. ``--think-ms`` pauses each reader between an image and its answer (0: every
reader clicks as soon as the server answers, the worst case).

The server is then killed (SIGKILL, no clean shutdown) and the answers in ``study.sqlite`` are
compared with those the server acknowledged (303): *lost* = acknowledged but not stored (goal 0).
Printed: lost, p50 / p95 latency of an image fetch, of an answer post and of a page, the load
average during the run and the verdict against the goal (p95 <= 50 ms on 2 cores); ``--out
DIR`` also writes ``study_load.json``.

Run: ``python benchmarks/study_load.py [--readers 50] [--images 40] [--think-ms 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:  # the maintained fork that starlette's TestClient uses; the same API
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

from medisynth.study import store
from medisynth.study.create import create_study

GOAL_MS = 50.0
_IMAGE = re.compile(r'name="image" value="([0-9a-f]{16})"')
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Tally:
    """What the simulated readers saw."""

    latency_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"image": [], "answer": [], "page": []}
    )
    acknowledged: set[tuple[str, str]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def make_study(folder: Path, images: int, readers: int) -> dict[str, str]:
    """A study of ``images`` tiny images and ``readers`` invited readers; returns the tokens."""
    rng = np.random.default_rng(0)
    half = max(1, images // 2) + 1
    for truth in store.TRUTHS:
        np.save(folder / f"{truth}.npy", rng.integers(0, 256, (half, 1, 28, 28), np.uint8))
    study = folder / "study"
    create_study(str(folder / "real.npy"), str(folder / "synthetic.npy"), study, n=images)
    conn = store.open_study(study)
    names = [f"reader-{i:03d}" for i in range(readers)]
    try:
        return {name: store.add_reader(conn, name) for name in names}
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float | None:
    """The CPU time a process has used (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(study: Path, port: int) -> subprocess.Popen[bytes]:
    """``medisynth study serve`` in a subprocess, once it answers."""
    command = "from medisynth.cli import main; raise SystemExit(main())"
    server = subprocess.Popen(
        [sys.executable, "-c", command, "study", "serve", str(study), "--port", str(port)]
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not answer within 60 s")


async def timed(tally: Tally, kind: str, request: Any) -> Any:
    start = time.perf_counter()
    response = await request
    tally.latency_ms[kind].append((time.perf_counter() - start) * 1000)
    return response


async def read(
    client: httpx.AsyncClient, name: str, token: str, n: int, think: float, tally: Tally
) -> None:
    """One reader: page -> image -> answer, until every image is answered."""
    pause = random.Random(name)  # each reader its own pauses, uniform in [0, 2 think]
    await asyncio.sleep(pause.uniform(0, think))  # readers start at different times
    for _ in range(n + 1):
        page = await timed(tally, "page", client.get(f"/r/{token}"))
        image, csrf = _IMAGE.search(page.text), _CSRF.search(page.text)
        if image is None or csrf is None:
            if "All images answered" not in page.text:
                tally.errors.append(f"{name}: page {page.status_code}")
            return
        picture = await timed(tally, "image", client.get(f"/r/{token}/image/{image[1]}"))
        if picture.status_code != 200 or picture.headers["content-type"] != "image/png":
            tally.errors.append(f"{name}: image {picture.status_code}")
        if think:
            await asyncio.sleep(pause.uniform(0, 2 * think))
        form = {"image": image[1], "csrf": csrf[1], "answer": "real", "confidence": "3"}
        posted = await timed(tally, "answer", client.post(f"/r/{token}/answer", data=form))
        if posted.status_code == 303:
            tally.acknowledged.add((name, image[1]))
        else:
            tally.errors.append(f"{name}: answer {posted.status_code}")


async def run_readers(
    base: str, tokens: dict[str, str], n: int, think: float, timeout: float
) -> Tally:
    """Every reader at once, each on a connection of its own (clients made before the clock
    starts: making one takes milliseconds of CPU)."""
    tally = Tally()
    limits = httpx.Limits(max_connections=1)
    clients = [httpx.AsyncClient(base_url=base, limits=limits, timeout=30) for _ in tokens]
    readers = [
        read(client, name, token, n, think, tally)
        for client, (name, token) in zip(clients, tokens.items(), strict=True)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*readers), timeout)
    except asyncio.TimeoutError:
        tally.errors.append(f"stopped after {timeout} s")
    finally:
        for client in clients:
            await client.aclose()
    return tally


def stored(study: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(study / store.DATABASE)
    try:
        return {
            (reader, image) for reader, image in conn.execute("SELECT reader, image FROM answers")
        }
    finally:
        conn.close()


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"n": len(values), "p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2),
            "max_ms": round(max(values), 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--think-ms", type=float, default=0.0, help="pause before each answer")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for all readers")
    parser.add_argument("--out", type=Path, default=None, help="folder for study_load.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="medisynth-study-load-") as tmp:
        folder = Path(tmp)
        tokens = make_study(folder, args.images, args.readers)
        port = free_port()
        server = start_server(folder / "study", port)
        try:
            load_before, cpu_before = os.getloadavg(), cpu_seconds(server.pid)
            start, client_before = time.perf_counter(), time.process_time()
            tally = asyncio.run(run_readers(f"http://127.0.0.1:{port}", tokens, args.images,
                                            args.think_ms / 1000, args.timeout))  # fmt: skip
            wall, client_cpu = time.perf_counter() - start, time.process_time() - client_before
            load_after, cpu_after = os.getloadavg(), cpu_seconds(server.pid)
        finally:
            server.send_signal(signal.SIGKILL)  # no clean shutdown: what was acknowledged stays
            server.wait()
        in_database = stored(folder / "study")
    lost = tally.acknowledged - in_database
    requests = sum(len(values) for values in tally.latency_ms.values())
    latency = {kind: percentiles(values) for kind, values in tally.latency_ms.items()}
    ratios = {kind: (latency[kind]["p95_ms"] or 0.0) / GOAL_MS for kind in ("image", "answer")}
    result: dict[str, Any] = {
        "readers": args.readers,
        "images": args.images,
        "think_ms": args.think_ms,
        "expected_answers": args.readers * args.images,
        "acknowledged": len(tally.acknowledged),
        "stored": len(in_database),
        "lost": len(lost),
        "errors": tally.errors[:20],
        "wall_s": round(wall, 2),
        "answers_per_s": round(len(tally.acknowledged) / wall, 1),
        "latency": latency,
        "p95_over_goal": {kind: round(ratio, 2) for kind, ratio in ratios.items()},
        "server_cpu_ms_per_request": None
        if cpu_before is None or cpu_after is None or not requests
        else round((cpu_after - cpu_before) * 1000 / requests, 3),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, requests), 3),
        "loadavg_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "cpus": os.cpu_count(),
        "goal_met": not lost and not tally.errors and max(ratios.values()) <= 1.0,
    }
    print(f"{args.readers} readers x {args.images} images over loopback, think {args.think_ms} ms:"
          f" {result['acknowledged']} answers acknowledged, {result['stored']} stored, "
          f"lost {result['lost']}, errors {len(tally.errors)} ({wall:.1f} s, "
          f"{result['answers_per_s']} answers/s)")  # fmt: skip
    for kind, row in latency.items():
        print(f"  {kind:6s} n={row['n']:5d}  p50 {row['p50_ms']} ms  p95 {row['p95_ms']} ms  "
              f"max {row['max_ms']} ms")  # fmt: skip
    print(
        f"  load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
        f"{os.cpu_count()} CPUs; CPU per request: server {result['server_cpu_ms_per_request']} "
        f"ms, simulated readers {result['client_cpu_ms_per_request']} ms"
    )
    print(
        f"  p95 / {GOAL_MS:.0f} ms goal: image {ratios['image']:.2f}, answer "
        f"{ratios['answer']:.2f} -> {'goal met' if result['goal_met'] else 'goal NOT met'}"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "study_load.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if not lost and not tally.errors else 1


if __name__ == "__main__":
    sys.exit(main())
