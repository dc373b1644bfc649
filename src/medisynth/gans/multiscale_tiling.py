"""Tiled inference of the multi-scale patch GAN: arbitrarily large images in bounded memory.

Every level runs patch by patch. Each tile keeps its central region (a ``margin`` of context
around it is computed and thrown away, so the networks' zero padding never shows), neighbouring
tiles overlap by ``overlap`` voxels and are blended with linear or cosine ramps whose weights
sum to exactly 1 at every voxel. Tiles run in sub-batches and stream into arrays that can be
``numpy.memmap`` files (:class:`Scratch`), so peak memory is the model, a few tiles and the
pages of the arrays being touched.

* :func:`plan_axis` / :func:`plan_tiles`: where the tiles go and their blending weights.
* :func:`run_tiled`: apply a patch function over a whole array, tile by tile.
* :func:`synthesize`: the whole multi-level pipeline (generation, or refinement of a given
  low-resolution volume), in memory or through memmaps.
* :func:`bounded_heap`, :func:`release_pages`, :class:`Scratch`: keep the resident memory flat.

Writing the result to files (NIfTI volumes, generated sets) is the apply layer's business
(:mod:`medisynth.apply.volumes`).

>>> import numpy as np
>>> starts, weights = plan_axis(100, tile=48, overlap=8, align=2)
>>> starts
[0, 40, 52]
>>> total = np.zeros(100)
>>> for s, w in zip(starts, weights):
...     total[s:s + len(w)] += w
>>> bool(np.allclose(total, 1.0))
True
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medisynth.errors import ConfigError, MedisynthError
from medisynth.nets.multiscale import (
    NOISE_FACTOR,
    MultiScaleGenerator,
    PatchRefiner,
    noise_map,
    upsample2,
)

Ramp = Literal["linear", "cosine", "none"]
PatchFunction = Callable[[list[torch.Tensor]], torch.Tensor]
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


# ----------------------------------------------------------------------------- tiling
def _ramp(length: int, kind: Ramp) -> np.ndarray:
    """Increasing weights over ``length`` voxels, strictly inside (0, 1]."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    if kind == "cosine":
        return np.sin(0.5 * np.pi * t) ** 2
    if kind == "none":
        return np.ones(length)
    return t


def plan_axis(
    size: int, tile: int, overlap: int, align: int = 1, ramp: Ramp = "linear"
) -> tuple[list[int], list[np.ndarray]]:
    """Tile starts along one axis of ``size`` voxels and each tile's blending weights.

    Tiles are ``tile`` voxels long (the last one ends at ``size``), start at multiples of
    ``align``, and overlap their neighbours by at least ``overlap``. Each tile's weight ramps up
    over its first ``overlap`` voxels and down over its last (not at the volume's ends); the
    weights are normalised so that, at every voxel, the tiles covering it sum to 1.
    """
    if size < 1 or tile < 1 or overlap < 0 or align < 1:
        raise ConfigError(f"bad tiling: size {size}, tile {tile}, overlap {overlap}")
    if size % align:
        raise ConfigError(f"size {size} is not a multiple of the alignment {align}")
    if tile >= size:
        return [0], [np.ones(size, np.float32)]
    tile = max(align, tile - tile % align)
    overlap = min(overlap, tile // 2)
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, size - tile, stride)) + [size - tile]
    hats = []
    for start in starts:
        hat = np.ones(tile)
        if overlap and kind_allows(ramp):
            if start > 0:
                hat[:overlap] = _ramp(overlap, ramp)
            if start + tile < size:
                hat[tile - overlap :] = _ramp(overlap, ramp)[::-1]
        hats.append(hat)
    total = np.zeros(size)
    for start, hat in zip(starts, hats, strict=True):
        total[start : start + tile] += hat
    weights = [
        (hat / total[start : start + tile]).astype(np.float32)
        for start, hat in zip(starts, hats, strict=True)
    ]
    return starts, weights


def kind_allows(ramp: Ramp) -> bool:
    """Whether ``ramp`` blends (``"none"`` averages overlaps uniformly)."""
    return ramp != "none"


@dataclass(frozen=True)
class Tile:
    """One tile: the region it writes (``start``..``stop``), the region it computes
    (``lo``..``hi``: the kept region plus the margin, clipped to the array) and its weights."""

    start: tuple[int, ...]
    stop: tuple[int, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    weights: tuple[np.ndarray, ...] = field(compare=False)

    @property
    def window_shape(self) -> tuple[int, ...]:
        return tuple(h - lo for lo, h in zip(self.lo, self.hi, strict=True))

    def weight(self) -> np.ndarray:
        """The blending weights of the kept region (outer product of the per-axis weights)."""
        out = self.weights[0]
        for w in self.weights[1:]:
            out = np.multiply.outer(out, w)
        return np.asarray(out, dtype=np.float32)


def plan_tiles(
    shape: Sequence[int],
    tile: int | Sequence[int],
    overlap: int,
    margin: int,
    align: int = 1,
    ramp: Ramp = "linear",
) -> list[Tile]:
    """The tiles covering ``shape`` (see :func:`plan_axis`); the weights sum to 1 at every voxel.

    >>> tiles = plan_tiles((40, 40, 24), tile=16, overlap=4, margin=6, align=2)
    >>> len(tiles), tiles[0].lo, tiles[0].hi
    (18, (0, 0, 0), (22, 22, 22))
    """
    tiles_per_axis = [tile] * len(shape) if isinstance(tile, int) else list(tile)
    margin = math.ceil(margin / align) * align
    per_axis = [
        plan_axis(size, t, overlap, align, ramp)
        for size, t in zip(shape, tiles_per_axis, strict=True)
    ]
    tiles = []
    for choice in itertools.product(*[range(len(starts)) for starts, _ in per_axis]):
        start, stop, lo, hi, weights = [], [], [], [], []
        for axis, index in enumerate(choice):
            starts, axis_weights = per_axis[axis]
            s = starts[index]
            e = s + len(axis_weights[index])
            start.append(s)
            stop.append(e)
            lo.append(max(0, s - margin))
            hi.append(min(shape[axis], e + margin))
            weights.append(axis_weights[index])
        tiles.append(Tile(tuple(start), tuple(stop), tuple(lo), tuple(hi), tuple(weights)))
    return tiles


def run_tiled(
    fn: PatchFunction,
    inputs: Sequence[tuple[np.ndarray, int]],
    out: np.ndarray,
    *,
    tile: int | Sequence[int] = 64,
    overlap: int = 8,
    margin: int = 8,
    align: int = 1,
    batch: int = 2,
    ramp: Ramp = "linear",
    progress: bool = False,
    desc: str = "tiles",
) -> int:
    """Fill ``out`` (``(C, *spatial)``, zeros; an array or a memmap) tile by tile with ``fn``.

    ``inputs`` are ``(array, scale)`` pairs: ``array`` is ``(C_i, *spatial / scale)``. ``fn``
    receives, per input, a batch ``(B, C_i, *window / scale)`` and returns ``(B, C, *window)``;
    tiles with equal window shapes run together, ``batch`` at a time. Returns the tile count.

    >>> import numpy as np, torch
    >>> src = np.random.rand(1, 10, 12).astype(np.float32)
    >>> out = np.zeros((1, 20, 24), np.float32)
    >>> up = lambda xs: xs[0].repeat_interleave(2, 2).repeat_interleave(2, 3)
    >>> run_tiled(up, [(src, 2)], out, tile=8, overlap=2, margin=2, align=2)
    12
    >>> bool(np.allclose(out[0, ::2, ::2], src[0]))
    True
    """
    spatial = tuple(out.shape[1:])
    for array, scale in inputs:
        expected = tuple(s // scale for s in spatial)
        if tuple(array.shape[1:]) != expected or any(s % scale for s in spatial):
            raise ConfigError(
                f"input of shape {array.shape[1:]} does not match output {spatial} / {scale}"
            )
    plan = plan_tiles(spatial, tile, overlap, margin, align, ramp)
    groups: dict[tuple[int, ...], list[Tile]] = {}
    for item in plan:
        groups.setdefault(item.window_shape, []).append(item)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), desc=desc, unit="tile", mininterval=1.0)
    for group in groups.values():
        for first in range(0, len(group), batch):
            chunk = group[first : first + batch]
            with torch.no_grad():
                result = fn(_windows(inputs, chunk)).float().cpu().numpy()
            if not np.isfinite(result).all():
                raise MedisynthError(
                    f"the network gave NaN or infinite values ({desc}); the volume was not "
                    "written. Mixed precision can do this on some CPUs: generate again with "
                    "precision 'fp32' (medisynth generate --precision fp32)"
                )
            _blend(out, chunk, result)
            for array in (out, *(a for a, _ in inputs)):
                release_pages(array)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return len(plan)


def _windows(inputs: Sequence[tuple[np.ndarray, int]], chunk: Sequence[Tile]) -> list[torch.Tensor]:
    """Per input, the batch of the tiles' computed regions (``lo``..``hi`` at its scale)."""
    tensors = []
    for array, scale in inputs:
        windows = [
            np.asarray(
                array[
                    (slice(None),)
                    + tuple(
                        slice(lo // scale, hi // scale) for lo, hi in zip(t.lo, t.hi, strict=True)
                    )
                ],
                dtype=np.float32,
            )
            for t in chunk
        ]
        tensors.append(torch.from_numpy(np.stack(windows)))
    return tensors


def _blend(out: np.ndarray, chunk: Sequence[Tile], result: np.ndarray) -> None:
    """Add each tile's kept region of ``result``, times its blending weights, into ``out``."""
    for t, patch in zip(chunk, result, strict=True):
        kept = patch[
            (slice(None),)
            + tuple(slice(s - lo, e - lo) for s, e, lo in zip(t.start, t.stop, t.lo, strict=True))
        ]
        region = (slice(None),) + tuple(slice(s, e) for s, e in zip(t.start, t.stop, strict=True))
        out[region] += kept * t.weight()


# ----------------------------------------------------------------------------- memory
#: allocations at least this large get their own mapping (see :func:`bounded_heap`)
MMAP_THRESHOLD = 1 << 20


@contextlib.contextmanager
def bounded_heap(threshold: int = MMAP_THRESHOLD) -> Iterator[bool]:
    """Keep freed tensor buffers from piling up in the C heap while tiles run (glibc only).

    glibc raises its mmap threshold each time a large block is freed, after which blocks of
    tens of MiB come from the heap, which fragments as tiles of different shapes come and go:
    the resident set then drifts by +-50 MiB from run to run and with the number of tiles.
    This fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``, for the rest of the process: it
    cannot be handed back to glibc's adaptive rule) so blocks of ``threshold`` bytes or more are
    mapped and unmapped on their own, and trims the heap on exit. Yields whether it applied
    (``False`` off glibc).

    >>> with bounded_heap() as applied:
    ...     pass
    """
    libc = _glibc()
    applied = bool(libc is not None and libc.mallopt(-3, int(threshold)))  # M_MMAP_THRESHOLD
    try:
        yield applied
    finally:
        if libc is not None:
            libc.malloc_trim(0)


def _glibc() -> Any:
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


# ----------------------------------------------------------------------------- scratch arrays
def release_pages(array: np.ndarray) -> bool:
    """Unmap the resident pages of a file-backed ``numpy.memmap`` from this process (Linux).

    The data stays in the file (the mapping is shared: dirty pages go to the page cache and
    are written back by the kernel; the next access faults them in again), so the process's
    resident set holds the pages of the current tile only, not every page it ever touched.
    A no-op (``False``) for arrays in RAM, or where ``madvise`` is missing.

    >>> release_pages(np.zeros(3))
    False
    """
    import mmap

    base: Any = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if base is None or advice is None or base.closed:
        return False
    base.madvise(advice)
    return True


class Scratch:
    """Float32 arrays in RAM (``folder=None``) or as memmaps in temp files inside ``folder``.

    Use as a context manager: the temp files are deleted on exit; :meth:`free` drops one early.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, prefix: str = ".ms") -> None:
        self.folder = None if folder is None else Path(folder)
        self.prefix = prefix
        self.files: dict[int, Path] = {}

    def zeros(self, shape: Sequence[int], order: Literal["C", "F"] = "C") -> np.ndarray:
        """A float32 array of zeros; ``order="F"`` suits arrays written out as NIfTI (whose
        slabs along the last axis are then contiguous, so writing one touches only its pages)."""
        shape = tuple(int(s) for s in shape)
        if self.folder is None:
            return np.zeros(shape, np.float32, order=order)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{self.prefix}.", suffix=".f32", dir=self.folder)
        os.close(fd)
        array = np.memmap(name, dtype=np.float32, mode="w+", shape=shape, order=order)
        self.files[id(array)] = Path(name)
        return array

    def free(self, array: np.ndarray) -> None:
        path = self.files.pop(id(array), None)
        if path is not None:  # the mapping goes when the last reference does
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        for path in self.files.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.files.clear()


def downsample_array(array: np.ndarray, factor: int, out: np.ndarray | None = None) -> np.ndarray:
    """Block-mean downsampling of ``(C, *spatial)`` by ``factor`` (slab by slab, low memory).

    >>> downsample_array(np.arange(16, dtype=np.float32).reshape(1, 4, 4), 2)[0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    if factor == 1:
        return array
    channels, *spatial = array.shape
    if any(s % factor for s in spatial):
        raise ConfigError(f"shape {tuple(spatial)} is not divisible by {factor}")
    small = [s // factor for s in spatial]
    if out is None:
        out = np.zeros((channels, *small), np.float32)
    slab = max(1, 64 // factor)
    for start in range(0, small[0], slab):
        stop = min(small[0], start + slab)
        block = np.asarray(array[:, start * factor : stop * factor], dtype=np.float32)
        shape = [channels]
        for s in [stop - start, *small[1:]]:
            shape += [s, factor]
        out[:, start:stop] = block.reshape(shape).mean(axis=tuple(range(2, len(shape), 2)))
        release_pages(array)
        release_pages(out)
    return out


# ----------------------------------------------------------------------------- the pipeline
@dataclass
class TileSettings:
    """How inference is tiled (sizes in voxels of the level being computed).

    Attributes:
        tile: side of the region each tile keeps (level 0 uses :func:`level0_tile`).
        overlap: overlap of neighbouring tiles, blended by ``ramp``.
        batch: tiles per forward pass.
        ramp: ``"linear"``, ``"cosine"`` or ``"none"`` (uniform average of overlaps).
        margin: extra context per side; ``None`` = the network's receptive radius (exact).
    """

    tile: int = 64
    overlap: int = 8
    batch: int = 2
    ramp: Ramp = "linear"
    margin: int | None = None


def _margin(settings: TileSettings, radius: int, align: int) -> int:
    wanted = radius if settings.margin is None else settings.margin
    return math.ceil(wanted / align) * align


def level0_tile(tile: int) -> int:
    """Tile side for level 0: half the patch levels' (its network is about 4x wider), >= 16."""
    return max(16, tile // 2 // NOISE_FACTOR * NOISE_FACTOR)


def level_shapes(size: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """The grid of each level for a final ``size`` (level ``levels`` is ``size``)."""
    return [tuple(s // 2 ** (levels - level) for s in size) for level in range(levels + 1)]


def synthesize(
    generator: MultiScaleGenerator,
    size: Sequence[int],
    *,
    noise: torch.Generator | None = None,
    condition: np.ndarray | None = None,
    label: int | None = None,
    start: np.ndarray | None = None,
    settings: TileSettings | None = None,
    scratch: Scratch | None = None,
    out: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    autocast: Autocast = contextlib.nullcontext,
    channels_last: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Run every level of ``generator`` in tiles and return the ``(C, *size)`` result in [-1, 1].

    Args:
        generator: the (EMA) generators of a trained family.
        size: the final grid; a multiple of ``4 * 2**levels`` when generating from level 0.
        noise: CPU random generator for the level-0 noise map (reproducible output).
        condition: ``(Cc, *size)`` condition of a conditional model, in model units.
        label: the class of a class-conditional model (``generator.num_classes > 0``).
        start: a ``(C, *size / 2**k)`` volume in [-1, 1] used as the output of level
            ``levels - k``: the pipeline then only refines it (super-resolution by ``2**k``).
        settings: tiling; see :class:`TileSettings`.
        scratch: where intermediate levels live (memmaps in a folder, or RAM by default).
        out: the array to fill with the final level (zeros, e.g. a memmap); allocated otherwise.
        autocast: mixed-precision context for the forward passes (see
            :func:`medisynth.precision.precision_context`).
        channels_last: feed the networks channels-last tensors (faster with bf16 on CPUs).
    """
    scratch = scratch or Scratch()
    size = tuple(int(s) for s in size)
    shapes = level_shapes(size, generator.levels)
    first = _first_level(generator, size, shapes, start)
    _check_label_and_condition(generator, size, label, condition, start)
    conds = _condition_pyramid(condition, shapes, first, scratch)
    run = _TiledRun(
        generator, settings or TileSettings(), scratch, torch.device(device), autocast,
        channels_last, progress,
    )  # fmt: skip
    was_training = generator.training
    generator.eval()
    try:
        if start is None:
            current = run.level0(shapes[0], noise, label, conds[0], out)
        else:
            current = np.asarray(start, dtype=np.float32)
        for level in range(first + 1, generator.levels + 1):
            target = run.refine(level, current, conds[level], shapes[level], out)
            if current is not start:
                scratch.free(current)
            current = target
        if out is not None and current is not out:
            out[...] = current
            current = out
    finally:
        generator.train(was_training)
        for cond_array in conds[first : generator.levels]:
            if cond_array is not None:
                scratch.free(cond_array)
    return current


def _first_level(
    generator: MultiScaleGenerator,
    size: tuple[int, ...],
    shapes: list[tuple[int, ...]],
    start: np.ndarray | None,
) -> int:
    """The level whose output is given: 0 when generating from noise (``start`` is None), else
    the level ``start`` stands for (ConfigError when it cannot be refined to ``size``)."""
    levels = generator.levels
    if start is None:
        unit = NOISE_FACTOR * 2**levels
        if any(s % unit for s in size):
            raise ConfigError(f"size {size} must be a multiple of {unit} for this model")
        return 0
    k = round(math.log2(size[0] / start.shape[1])) if start.shape[1] else -1
    first = levels - k
    if k < 1 or k > levels or tuple(start.shape[1:]) != shapes[first]:
        raise ConfigError(
            f"a start volume of shape {tuple(start.shape[1:])} cannot be refined to {size} by "
            f"this model (x2 per level, {levels} levels)"
        )
    return first


def _check_label_and_condition(
    generator: MultiScaleGenerator,
    size: tuple[int, ...],
    label: int | None,
    condition: np.ndarray | None,
    start: np.ndarray | None,
) -> None:
    """ConfigError when the label or condition does not fit the generator."""
    num_classes = generator.num_classes
    if start is None and num_classes and label is None:
        raise ConfigError(f"this model is class-conditional: give a label in 0..{num_classes - 1}")
    if label is not None and start is None and not 0 <= label < max(num_classes, 1):
        raise ConfigError(f"label {label} is not a class of this model ({num_classes} classes)")
    cond_channels = generator.cond_channels
    if cond_channels and condition is None:
        raise ConfigError("this model is conditional: give a condition volume")
    if condition is not None:
        if not cond_channels:
            raise ConfigError("this model is unconditional; it takes no condition")
        if tuple(condition.shape) != (cond_channels, *size):
            raise ConfigError(
                f"condition shape {tuple(condition.shape)} != {(cond_channels, *size)}"
            )


def _condition_pyramid(
    condition: np.ndarray | None, shapes: list[tuple[int, ...]], first: int, scratch: Scratch
) -> list[np.ndarray | None]:
    """The condition at every level from ``first`` up (block means, in ``scratch``)."""
    levels = len(shapes) - 1
    conds: list[np.ndarray | None] = [None] * (levels + 1)
    if condition is None:
        return conds
    conds[levels] = condition
    for level in range(levels - 1, first - 1, -1):
        previous = conds[level + 1]
        assert previous is not None
        conds[level] = downsample_array(
            previous, 2, scratch.zeros((condition.shape[0], *shapes[level]))
        )
    return conds


@dataclass
class _TiledRun:
    """The levels of one :func:`synthesize` call, each run tile by tile."""

    generator: MultiScaleGenerator
    settings: TileSettings
    scratch: Scratch
    device: torch.device
    autocast: Autocast
    channels_last: bool
    progress: bool

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.channels_last:
            fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
            x = x.contiguous(memory_format=fmt)
        return x

    def _maybe(self, x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else self.prepare(x)

    def _target(self, level: int, shape: tuple[int, ...], out: np.ndarray | None) -> np.ndarray:
        """``out`` for the last level, else a scratch array."""
        if level == self.generator.levels and out is not None:
            return out
        return self.scratch.zeros((self.generator.base.out_channels, *shape))

    def level0(
        self,
        shape: tuple[int, ...],
        noise: torch.Generator | None,
        label: int | None,
        cond: np.ndarray | None,
        out: np.ndarray | None,
    ) -> np.ndarray:
        """Level 0 from a noise map (and the condition), in tiles."""
        base, settings = self.generator.base, self.settings
        grid = tuple(s // NOISE_FACTOR for s in shape)
        z = noise_map(self.generator.latent_dim, grid, generator=noise)[0].numpy()
        current = self._target(0, shape, out)
        inputs: list[tuple[np.ndarray, int]] = [(z, NOISE_FACTOR)]
        if cond is not None:
            inputs.append((cond, 1))
        num_classes = self.generator.num_classes

        def level0(xs: list[torch.Tensor]) -> torch.Tensor:
            labels = None
            if num_classes:
                labels = torch.full((len(xs[0]),), int(label or 0), device=self.device)
            with self.autocast():
                cond_tile = xs[1] if len(xs) > 1 else None
                return base(self.prepare(xs[0]), self._maybe(cond_tile), labels)

        run_tiled(
            level0,
            inputs,
            current,
            tile=level0_tile(settings.tile),
            overlap=settings.overlap,
            margin=_margin(settings, base.receptive_radius, NOISE_FACTOR),
            align=NOISE_FACTOR,
            batch=settings.batch,
            ramp=settings.ramp,
            progress=self.progress,
            desc="level 0",
        )
        return current

    def refine(
        self,
        level: int,
        current: np.ndarray,
        cond: np.ndarray | None,
        shape: tuple[int, ...],
        out: np.ndarray | None,
    ) -> np.ndarray:
        """Level ``level`` (>= 1) from the upsampled level below (and the condition), in tiles."""
        refiner = self.generator.refiners[level - 1]
        assert isinstance(refiner, PatchRefiner)
        settings = self.settings
        target = self._target(level, shape, out)
        inputs = [(current, 2)]
        if cond is not None:
            inputs.append((cond, 1))

        def refine(xs: list[torch.Tensor]) -> torch.Tensor:
            with self.autocast():
                up = upsample2(self.prepare(xs[0]))
                return refiner(up, self._maybe(xs[1] if len(xs) > 1 else None))

        run_tiled(
            refine,
            inputs,
            target,
            tile=settings.tile,
            overlap=settings.overlap,
            margin=_margin(settings, refiner.receptive_radius + 2, 2),
            align=2,
            batch=settings.batch,
            ramp=settings.ramp,
            progress=self.progress,
            desc=f"level {level}",
        )
        return target


class TopLevels(MultiScaleGenerator):
    """A view of a generator's top ``k`` refiners as a ``k``-level generator (shares weights):
    what refines a given volume by ``2**k``."""

    def __init__(self, generator: MultiScaleGenerator, k: int) -> None:  # noqa: D107
        torch.nn.Module.__init__(self)
        self.levels = k
        self.latent_dim = generator.latent_dim
        self.spatial_dims = generator.spatial_dims
        self.cond_channels = generator.cond_channels
        self.num_classes = generator.num_classes
        self.base = generator.base
        self.refiners = torch.nn.ModuleList(list(generator.refiners)[generator.levels - k :])
