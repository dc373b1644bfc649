"""Run monitoring: JSONL metrics, optional TensorBoard, sample-grid PNGs.

>>> import tempfile, pathlib, torch
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> save_image_grid(torch.zeros(6, 1, 8, 8), folder / "grid.png", per_row=3)
>>> from PIL import Image
>>> Image.open(folder / "grid.png").size
(32, 22)
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from medisynth.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)


class MetricsLogger:
    """Appends one JSON object per line to ``metrics.jsonl``; mirrors scalars to TensorBoard.

    TensorBoard is used only when ``tensorboard=True`` and the package is installed. A resumed
    run gives ``resume_step`` (the checkpoint's step): the lines an earlier process logged after
    that step are dropped (its training after the checkpoint is done again), so every step is
    logged once.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        tensorboard: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "metrics.jsonl"
        if resume_step is not None:
            drop_metrics_after(self.path, resume_step)
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: JSONL only
                log.debug("tensorboard is not installed; logging metrics to JSONL only")
            else:
                purge = None if resume_step is None else resume_step + 1
                self._writer = SummaryWriter(
                    log_dir=str(self.folder / "tensorboard"), purge_step=purge
                )

    def log(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def drop_metrics_after(path: str | os.PathLike[str], step: int) -> int:
    """Keep the lines of a ``metrics.jsonl`` up to ``step`` (and drop a line cut short by a
    kill); the file is rewritten atomically when anything goes. Returns how many lines went.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> _ = path.write_text('{"step": 1}\\n{"step": 2}\\n{"step": 3}\\n{"st')
    >>> drop_metrics_after(path, 2), [r["step"] for r in read_metrics(path)]
    (2, [1, 2])
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            keep = int(record["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False  # half a line: the process was killed while writing it
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return dropped


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def image_grid(images: torch.Tensor, per_row: int, padding: int = 2) -> np.ndarray:
    """Tile ``(N, C, *spatial)`` images in [-1, 1] into one uint8 image ``(H, W)`` or ``(H, W, 3)``.

    Volumes show their middle slice along the first spatial axis.
    """
    images = images.detach().float().cpu()
    if images.ndim == 5:
        images = images[:, :, images.shape[2] // 2]
    n, channels, height, width = images.shape
    if channels not in (1, 3):
        images, channels = images[:, :1], 1
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    per_row = max(1, min(per_row, n))
    rows = math.ceil(n / per_row)
    grid = np.zeros(
        (channels, rows * (height + padding) + padding, per_row * (width + padding) + padding),
        np.uint8,
    )
    for index in range(n):
        r, c = divmod(index, per_row)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[:, top : top + height, left : left + width] = pixels[index]
    return grid[0] if channels == 1 else np.moveaxis(grid, 0, -1)


def save_image_grid(
    images: torch.Tensor, path: str | os.PathLike[str], per_row: int = 8, padding: int = 2
) -> None:
    """Write :func:`image_grid` of ``images`` as a PNG, atomically."""
    buffer = io.BytesIO()
    PILImage.fromarray(image_grid(images, per_row, padding)).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
