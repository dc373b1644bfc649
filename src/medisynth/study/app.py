"""The web app of a reader study (Starlette, server-rendered HTML and a little JavaScript).

Routes (every one but the landing page needs a valid secret token in its path):

- ``GET /``: the landing page (says nothing about the study);
- ``GET /r/{token}``: the reader's next image, in their own seeded order (resumes where they
  left off), with a progress bar, zoom, window/level on the stored (up to 16-bit) values,
  real/synthetic, confidence 1-5 and a comment;
- ``GET /r/{token}/image/{id}``: an image of the study (ids only; identical headers for every
  image);
- ``POST /r/{token}/answer``: stores an answer (CSRF token checked; committed before the
  response; a second answer on the same image is ignored);
- ``GET /admin/{token}``: each reader's progress (admin token).

Readers never see the truth or other readers' answers.
"""

from __future__ import annotations

import hmac
import html
import sqlite3
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from medisynth.study import store
from medisynth.study.writer import AnswerWriter

_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_PAGE_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src 'self'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "<style>body{font-family:sans-serif;margin:1em}#view{overflow:auto;max-width:100%;"
        "max-height:75vh;border:1px solid #ccc}#view canvas{image-rendering:pixelated;"
        "display:block}</style></head><body>"
        f"{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=_PAGE_HEADERS)


def _denied() -> HTMLResponse:
    return _page("Not found", "<p>Not found.</p>", status=404)


#: the reading page's script: a PNG decoder (8/16-bit, grey/RGB, no interlace: what
#: ``study create`` writes) that keeps the stored values, so that window/level acts on the full
#: 16 bits, drawing into a canvas at native resolution; zoom; keyboard shortcuts
_SCRIPT = """
<script>
const canvas = document.getElementById('image'), ww = document.getElementById('ww'),
  wc = document.getElementById('wc'), message = document.getElementById('message');
let zoom = 1, pixels = null;
async function decodePng(bytes) {  // -> {width, height, channels, values in [0, 1]}
  const view = new DataView(bytes.buffer), parts = [];
  let at = 8, width = 0, height = 0, depth = 8, type = 0;
  while (at + 8 <= bytes.length) {
    const length = view.getUint32(at);
    const name = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (name === 'IHDR') { width = view.getUint32(at + 8); height = view.getUint32(at + 12);
      depth = bytes[at + 16]; type = bytes[at + 17]; }
    else if (name === 'IDAT') parts.push(bytes.subarray(at + 8, at + 8 + length));
    at += 12 + length;
  }
  const inflated = new Blob(parts).stream().pipeThrough(new DecompressionStream('deflate'));
  const raw = new Uint8Array(await new Response(inflated).arrayBuffer());
  const channels = type === 2 ? 3 : 1, step = channels * depth / 8, stride = width * step;
  const data = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {  // undo the PNG filter of each row
    const filter = raw[y * (stride + 1)], source = raw.subarray(y * (stride + 1) + 1);
    const row = data.subarray(y * stride, (y + 1) * stride);
    const up = y ? data.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= step ? row[x - step] : 0, b = up[x], c = x >= step ? up[x - step] : 0;
      let predicted = 0;
      if (filter === 1) predicted = a; else if (filter === 2) predicted = b;
      else if (filter === 3) predicted = (a + b) >> 1;
      else if (filter === 4) { const pa = Math.abs(b - c), pb = Math.abs(a - c),
        pc = Math.abs(a + b - 2 * c); predicted = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c); }
      row[x] = source[x] + predicted;
    }
  }
  const count = width * height * channels, values = new Float64Array(count);
  for (let i = 0; i < count; i++)
    values[i] = depth === 16 ? (data[2 * i] * 256 + data[2 * i + 1]) / 65535 : data[i] / 255;
  return {width, height, channels, values};
}
function draw() {  // display = (value - (level - window / 2)) / window, clipped to [0, 1]
  if (!pixels) return;
  const {width, height, channels, values} = pixels, w = parseFloat(ww.value);
  const low = parseFloat(wc.value) - w / 2, out = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) {  // the clamped array rounds half to even, like numpy.rint
      const value = values[i * channels + (channels === 3 ? c : 0)];
      out.data[4 * i + c] = Math.min(1, Math.max(0, (value - low) / w)) * 255; }
    out.data[4 * i + 3] = 255;
  }
  canvas.getContext('2d').putImageData(out, 0, 0);
}
function setZoom(z) { zoom = Math.max(0.25, Math.min(16, z));
  if (pixels) canvas.style.width = pixels.width * zoom + 'px';
  document.getElementById('zoom').textContent = zoom + 'x'; }
function resetWindow() { ww.value = 1; wc.value = 0.5; draw(); }
fetch(canvas.dataset.src, {cache: 'no-store'})
  .then((r) => { if (!r.ok) throw new Error(r.status); return r.arrayBuffer(); })
  .then((b) => decodePng(new Uint8Array(b)))
  .then((p) => { pixels = p; canvas.width = p.width; canvas.height = p.height; setZoom(zoom);
    draw(); canvas.dataset.shown = 'yes'; })
  .catch(() => { message.textContent = 'The image could not be shown; reload the page.'; });
ww.oninput = draw; wc.oninput = draw;
document.getElementById('wreset').onclick = resetWindow;
document.getElementById('zin').onclick = () => setZoom(zoom * 2);
document.getElementById('zout').onclick = () => setZoom(zoom / 2);
document.addEventListener('keydown', (e) => {
  if (e.target.tagName === 'TEXTAREA') return;
  const k = e.key.toLowerCase();
  if (k === 'r') document.getElementById('a-real').checked = true;
  else if (k === 's') document.getElementById('a-synthetic').checked = true;
  else if (k >= '1' && k <= '5') document.getElementById('c' + k).checked = true;
  else if (k === '+') setZoom(zoom * 2);
  else if (k === '-') setZoom(zoom / 2);
  else if (k === '0') resetWindow();
  else if (k === 'enter') { e.preventDefault(); document.getElementById('form').requestSubmit(); }
});
document.getElementById('form').addEventListener('submit', () => {
  document.getElementById('submit').disabled = true; });
</script>
"""


def _reader_body(reader: str, token: str, progress: str, current: str, csrf: str) -> str:
    """The reading page: the image, zoom and window/level controls, and the answer form."""
    confidence = " ".join(
        f'<label><input type="radio" name="confidence" id="c{c}" value="{c}" required>{c}</label>'
        for c in range(1, 6)
    )
    return f"""<p>Reader {html.escape(reader)}: {progress}</p>
<p><button type="button" id="zout">-</button> <span id="zoom">1x</span>
<button type="button" id="zin">+</button>
<label>Window <input type="range" id="ww" min="0.001" max="1" step="0.001" value="1"></label>
<label>Level <input type="range" id="wc" min="0" max="1" step="0.001" value="0.5"></label>
<button type="button" id="wreset">Reset (0)</button></p>
<noscript><p>This page needs JavaScript to show the image.</p></noscript>
<div id="view"><canvas id="image" width="0" height="0" role="img" aria-label="image"
data-src="/r/{token}/image/{current}"></canvas></div><p id="message"></p>
<form id="form" method="post" action="/r/{token}/answer">
<input type="hidden" name="image" value="{current}">
<input type="hidden" name="csrf" value="{csrf}">
<p><label><input type="radio" name="answer" id="a-real" value="real" required> Real (R)</label>
<label><input type="radio" name="answer" id="a-synthetic" value="synthetic"> Synthetic (S)
</label></p>
<p>Confidence (1 = guess, 5 = certain): {confidence}</p>
<p><textarea name="comment" rows="2" cols="60" maxlength="2000"
placeholder="Comment (optional)"></textarea></p>
<p><button id="submit" type="submit">Submit (Enter)</button></p>
</form>{_SCRIPT}"""


def _admin_body(
    total: int, names: list[str], counts: dict[str, int], comments: list[tuple[str, str]]
) -> str:
    """The admin page: answers per reader and the latest comments (escaped)."""
    notes = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(c)}</td></tr>" for n, c in comments
    )
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{counts.get(n, 0)} / {total}</td></tr>" for n in names
    )
    return (
        f"<h1>Reader study</h1><p>{total} images, {len(names)} readers.</p>"
        f"<table><tr><th>reader</th><th>answered</th></tr>{rows}</table>"
        f"<h2>Comments</h2><table>{notes}</table>"
        "<p>Statistics: <code>medisynth study analyze STUDY -o REPORT</code></p>"
    )


def create_app(folder: str | Path) -> Starlette:
    """The app serving the study in ``folder`` (one SQLite connection for reads, used under a
    lock; answers go through an :class:`~medisynth.study.writer.AnswerWriter`)."""
    folder = Path(folder)
    conn = store.open_study(folder)
    lock = threading.Lock()
    writer = AnswerWriter(folder)  # answers: its own connection, commits in a worker thread

    def reader_of(request: Request) -> str | None:
        with lock:
            return store.reader_for_token(conn, request.path_params["token"])

    async def landing(request: Request) -> Response:
        return _page("Reader study", "<p>Open the personal link you were given.</p>")

    async def reader_page(request: Request) -> Response:
        reader = reader_of(request)
        if reader is None:
            return _denied()
        token = request.path_params["token"]
        with lock:
            order = store.reader_order(conn, reader)
            done = store.answered(conn, reader)
            csrf = store.csrf_token(conn, reader)
        current = next((i for i in order if i not in done), None)
        progress = (
            f'<progress value="{len(done)}" max="{len(order)}"></progress> '
            f"{len(done)} / {len(order)}"
        )
        if current is None:
            return _page("Done", f"<p>{progress}</p><p>All images answered. Thank you.</p>")
        return _page("Reader study", _reader_body(reader, token, progress, current, csrf))

    async def image(request: Request) -> Response:
        reader = reader_of(request)
        image_id = request.path_params["image_id"]
        if reader is None or not store.IMAGE_ID.fullmatch(image_id):
            return _denied()
        with lock:
            known = image_id in store.reader_order(conn, reader)
        if not known:
            return _denied()
        data = (folder / store.IMAGES / f"{image_id}.png").read_bytes()
        return Response(data, media_type="image/png", headers=_HEADERS)

    async def answer(request: Request) -> Response:
        reader = reader_of(request)
        if reader is None:
            return _denied()
        form = await request.form()
        with lock:
            expected = store.csrf_token(conn, reader)
        given = str(form.get("csrf", ""))
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _page("Forbidden", "<p>Invalid form token; reload the page.</p>", status=403)
        image_id = str(form.get("image", ""))
        call = str(form.get("answer", ""))
        try:
            confidence = int(str(form.get("confidence", "")))
        except ValueError:
            confidence = 0
        comment = str(form.get("comment", ""))[:2000]
        with lock:
            known = store.IMAGE_ID.fullmatch(image_id) and image_id in store.reader_order(
                conn, reader
            )
            if not known or call not in store.TRUTHS or not 1 <= confidence <= 5:
                return _page("Bad request", "<p>Incomplete answer; go back.</p>", status=400)
        try:  # committed off the event loop, with the answers that arrive meanwhile
            await writer.record(reader, image_id, call, confidence, comment)
        except sqlite3.Error:
            return _page("Error", "<p>The answer was not saved; try again.</p>", status=503)
        return RedirectResponse(f"/r/{request.path_params['token']}", status_code=303)

    async def admin(request: Request) -> Response:
        with lock:
            if not store.is_admin_token(conn, request.path_params["token"]):
                return _denied()
            total = len(store.image_ids(conn))
            counts = dict(
                conn.execute("SELECT reader, COUNT(*) FROM answers GROUP BY reader").fetchall()
            )
            names = store.readers(conn)
            comments = conn.execute(
                "SELECT reader, comment FROM answers WHERE comment != '' ORDER BY time DESC "
                "LIMIT 100"
            ).fetchall()
        return _page("Reader study admin", _admin_body(total, names, counts, comments))

    routes = [
        Route("/", landing),
        Route("/r/{token}", reader_page),
        Route("/r/{token}/image/{image_id}", image),
        Route("/r/{token}/answer", answer, methods=["POST"]),
        Route("/admin/{token}", admin),
    ]
    app = Starlette(routes=routes)
    app.state.conn = conn
    return app


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the study until interrupted (no access log: the paths hold the tokens)."""
    import uvicorn

    uvicorn.run(create_app(folder), host=host, port=port, access_log=False, log_level="warning")


def link(base: str, token: str, admin: bool = False) -> str:
    """The personal link of a reader (or the admin link) at ``base``."""
    return f"{base.rstrip('/')}/{'admin' if admin else 'r'}/{token}"
