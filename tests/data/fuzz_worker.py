"""Child process for test_fuzz.py: calls read_image on paths it is sent, under a memory limit.

Protocol: one JSON object per line. The parent writes ``{"path": ...}`` to stdin; the worker
answers ``{"outcome": ..., "type": ..., "detail": ...}`` on its own copy of stdout (fd 1 is
redirected to /dev/null so that library prints cannot corrupt the protocol). Outcomes:

* ``ok``: an Image that keeps its invariants (float32 (C,H,W)/(C,D,H,W), finite 4x4 affine,
  one finite positive spacing per spatial axis);
* ``error``: a MedisynthError whose message names the file;
* ``bug``: anything else: another exception, a broken Image, a message that does not name the
  file, a peak resident memory more than ``MEDISYNTH_FUZZ_MEMORY_MB`` (default 1024) above the
  worker's baseline, or a MemoryError anywhere in the exception chain (an attempt to reserve
  more than the address-space safety net).

Memory is judged by the peak resident set size (memory actually touched): a large but untouched
reservation (e.g. ``file.read(2**32)`` on a small file) costs nothing and is not a failure. As a
safety net for the machine, the address space (RLIMIT_AS) is capped at its size after the
imports plus 8 GiB. The worker exits after a memory failure (the peak cannot be reset), and the
parent starts a new one.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

DEFAULT_MEMORY_MB = 1024
ADDRESS_SPACE_NET = 8 * 2**30
HEADROOM = int(os.environ.get("MEDISYNTH_FUZZ_MEMORY_MB", DEFAULT_MEMORY_MB)) * 2**20


def _limit_address_space() -> int:
    """Cap the address space at its current size plus the safety net; return the cap (bytes,
    0 where the current size cannot be read, e.g. without /proc)."""
    try:
        with open("/proc/self/status") as status:
            vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        return 0
    limit = vm_kb * 1024 + ADDRESS_SPACE_NET
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return limit


def _peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (ru_maxrss: KiB, bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _image_problem(image: Any) -> str | None:
    """What is wrong with a returned Image, or None."""
    import numpy as np

    array = image.array
    if not isinstance(array, np.ndarray) or array.dtype != np.float32:
        return f"array is {type(array).__name__} {getattr(array, 'dtype', '')}, not float32"
    if array.ndim not in (3, 4) or 0 in array.shape:
        return f"array shape {array.shape} is not (C,H,W) or (C,D,H,W)"
    affine = np.asarray(image.affine)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        return f"affine is not a finite 4x4 matrix: {affine.tolist()}"
    spacing = tuple(image.spacing)
    if len(spacing) != array.ndim - 1 or not all(np.isfinite(s) and s > 0 for s in spacing):
        return f"spacing {spacing} for array shape {array.shape}"
    return None


def read_one(path: str, baseline_rss: int) -> dict[str, Any]:
    """Read ``path`` and classify the outcome."""
    from medisynth.data.io import read_image
    from medisynth.errors import MedisynthError

    start = time.perf_counter()
    try:
        image = read_image(path)
    except MedisynthError as err:
        chain = _chain(err)
        if any(isinstance(e, MemoryError) for e in chain):
            outcome, detail = "bug", f"MemoryError (address-space safety net) wrapped: {err!r}"
        elif Path(path).name not in str(err):
            outcome, detail = "bug", f"message does not name the file: {err}"
        else:
            outcome, detail = "error", str(err)
        kind = type(err).__name__
        trace = "".join(traceback.format_exception(err))
    except BaseException as err:  # noqa: BLE001 - classify everything, incl. MemoryError
        if isinstance(err, KeyboardInterrupt):
            raise
        outcome, kind, detail = "bug", type(err).__name__, str(err)
        trace = "".join(traceback.format_exception(err))
    else:
        kind, trace = "Image", ""
        problem = _image_problem(image)
        outcome, detail = ("bug", problem) if problem else ("ok", str(image.array.shape))
    grown = _peak_rss() - baseline_rss
    if grown > HEADROOM:
        outcome = "bug"
        detail = f"peak resident memory grew by {grown / 2**20:.0f} MiB ({kind}: {detail})"
        kind = "ExcessMemory"
    return {
        "outcome": outcome,
        "type": kind,
        "detail": detail[:2000],
        "traceback": trace[-6000:] if outcome == "bug" else "",
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    import nibabel  # noqa: F401 - import everything before the memory limit
    import PIL.Image  # noqa: F401
    import pydicom  # noqa: F401
    import tifffile  # noqa: F401

    import medisynth.data.io  # noqa: F401

    limit = _limit_address_space()
    baseline = _peak_rss()
    protocol.write(json.dumps({"ready": True, "limit": limit}) + "\n")
    for line in sys.stdin:
        answer = read_one(json.loads(line)["path"], baseline)
        protocol.write(json.dumps(answer) + "\n")
        if answer["type"] == "ExcessMemory":
            return


if __name__ == "__main__":
    main()
