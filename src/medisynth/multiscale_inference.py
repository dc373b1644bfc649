"""Tiled inference for the multi-scale patch GAN: arbitrarily large volumes in bounded memory.

Every level runs patch by patch. Each tile keeps its central region (a ``margin`` of context
around it is computed and thrown away, so the networks' zero padding never shows), neighbouring
tiles overlap by ``overlap`` voxels and are blended with linear or cosine ramps whose weights
sum to exactly 1 at every voxel. Tiles run in sub-batches and stream into a ``numpy.memmap``
in a temporary file beside the target, which is written as NIfTI at the end (slab by slab, then
renamed into place). Peak memory is the model, a few tiles and the output array's pages.

* :func:`plan_axis` / :func:`plan_tiles`: where the tiles go and their blending weights.
* :func:`run_tiled`: apply a patch function over a whole array, tile by tile.
* :func:`synthesize`: the whole multi-level pipeline (generation, or super-resolution from a
  given low-resolution volume), in memory or through memmaps.
* :func:`generate_volume`: a model package -> one NIfTI volume of any size (e.g. 512^3).
* :func:`enhance_volume`: whole-volume x2^k super-resolution of a given volume, patch by patch.

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
import gzip
import itertools
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from medisynth.errors import ConfigError, MedisynthError
from medisynth.files import atomic_path
from medisynth.nets.multiscale import (
    NOISE_FACTOR,
    MultiScaleGenerator,
    PatchRefiner,
    noise_map,
    upsample2,
)
from medisynth.output_set import LABELS, GenerateResult, OutputSet, model_name, output_dtype
from medisynth.precision import Precision, precision_context

if TYPE_CHECKING:
    from medisynth.gans.multiscale import MultiScaleGAN
    from medisynth.package import ModelPackage

log = logging.getLogger(__name__)

Ramp = Literal["linear", "cosine", "none"]
PatchFunction = Callable[[list[torch.Tensor]], torch.Tensor]


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
            tensors = []
            for array, scale in inputs:
                windows = [
                    np.asarray(
                        array[
                            (slice(None),)
                            + tuple(
                                slice(lo // scale, hi // scale)
                                for lo, hi in zip(t.lo, t.hi, strict=True)
                            )
                        ],
                        dtype=np.float32,
                    )
                    for t in chunk
                ]
                tensors.append(torch.from_numpy(np.stack(windows)))
            with torch.no_grad():
                result = fn(tensors).float().cpu().numpy()
            if not np.isfinite(result).all():
                raise MedisynthError(
                    f"the network gave NaN or infinite values ({desc}); the volume was not "
                    "written. Mixed precision can do this on some CPUs: generate again with "
                    "precision 'fp32' (medisynth generate --precision fp32)"
                )
            for t, patch in zip(chunk, result, strict=True):
                kept = patch[
                    (slice(None),)
                    + tuple(
                        slice(s - lo, e - lo)
                        for s, e, lo in zip(t.start, t.stop, t.lo, strict=True)
                    )
                ]
                region = (slice(None),) + tuple(
                    slice(s, e) for s, e in zip(t.start, t.stop, strict=True)
                )
                out[region] += kept * t.weight()
            for array in (out, *(a for a, _ in inputs)):
                release_pages(array)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return len(plan)


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
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
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
        autocast: mixed-precision context for the forward passes (see :func:`precision_context`).
        channels_last: feed the networks channels-last tensors (faster with bf16 on CPUs).
    """
    settings = settings or TileSettings()
    scratch = scratch or Scratch()
    levels = generator.levels
    size = tuple(int(s) for s in size)
    shapes = level_shapes(size, levels)
    if start is None:
        first = 0
        unit = NOISE_FACTOR * 2**levels
        if any(s % unit for s in size):
            raise ConfigError(f"size {size} must be a multiple of {unit} for this model")
    else:
        k = round(math.log2(size[0] / start.shape[1])) if start.shape[1] else -1
        first = levels - k
        if k < 1 or k > levels or tuple(start.shape[1:]) != shapes[first]:
            raise ConfigError(
                f"a start volume of shape {tuple(start.shape[1:])} cannot be refined to {size} by "
                f"this model (x2 per level, {levels} levels)"
            )
    device = torch.device(device)
    num_classes = getattr(generator, "num_classes", 0)
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
    conds: list[np.ndarray | None] = [None] * (levels + 1)
    if condition is not None:
        conds[levels] = condition
        for level in range(levels - 1, first - 1, -1):
            previous = conds[level + 1]
            assert previous is not None
            conds[level] = downsample_array(
                previous, 2, scratch.zeros((cond_channels, *shapes[level]))
            )

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        if channels_last:
            fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
            x = x.contiguous(memory_format=fmt)
        return x

    base = generator.base
    channels = base.out_channels
    was_training = generator.training
    generator.eval()
    try:
        if start is None:
            grid = tuple(s // NOISE_FACTOR for s in shapes[0])
            z = noise_map(generator.latent_dim, grid, generator=noise)[0].numpy()
            current = (
                out if levels == 0 and out is not None else scratch.zeros((channels, *shapes[0]))
            )
            inputs: list[tuple[np.ndarray, int]] = [(z, NOISE_FACTOR)]
            if conds[0] is not None:
                inputs.append((conds[0], 1))

            def level0(xs: list[torch.Tensor]) -> torch.Tensor:
                labels = None
                if num_classes:
                    labels = torch.full((len(xs[0]),), int(label or 0), device=device)
                with autocast():
                    return base(prepare(xs[0]), prepare(xs[1]) if len(xs) > 1 else None, labels)

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
                progress=progress,
                desc="level 0",
            )
        else:
            current = np.asarray(start, dtype=np.float32)
        for level in range(first + 1, levels + 1):
            refiner = generator.refiners[level - 1]
            assert isinstance(refiner, PatchRefiner)
            target = (
                out
                if level == levels and out is not None
                else scratch.zeros((channels, *shapes[level]))
            )
            inputs = [(current, 2)]
            cond = conds[level]
            if cond is not None:
                inputs.append((cond, 1))

            def refine(xs: list[torch.Tensor], refiner: PatchRefiner = refiner) -> torch.Tensor:
                with autocast():
                    up = upsample2(prepare(xs[0]))
                    return refiner(up, prepare(xs[1]) if len(xs) > 1 else None)

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
                progress=progress,
                desc=f"level {level}",
            )
            if current is not start:
                scratch.free(current)
            current = target
        if out is not None and current is not out:
            out[...] = current
            current = out
    finally:
        generator.train(was_training)
        for cond_array in conds[first:levels]:
            if cond_array is not None:
                scratch.free(cond_array)
    return current


# ----------------------------------------------------------------------------- NIfTI streaming
def write_nifti_streamed(
    path: str | os.PathLike[str],
    array: np.ndarray,
    affine: np.ndarray | None = None,
    dtype: str = "float32",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    crop: Sequence[int] | None = None,
    description: str = "medisynth synthetic image",
) -> None:
    """Write ``(C, *spatial)`` ``array`` (e.g. a memmap) as NIfTI, slab by slab, atomically.

    ``transform`` maps each float slab to output units before the cast to ``dtype`` (integer
    types are rounded and clipped); ``crop`` keeps ``array[:, :crop[0], :crop[1], ...]``. The
    axis layout matches :func:`medisynth.export.nifti.write_nifti`. ``.nii.gz`` is compressed
    while streaming (gzip level 1), so memory stays at one slab.

    >>> import tempfile, pathlib, nibabel as nib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.nii.gz"
    >>> write_nifti_streamed(p, np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4))
    >>> nib.load(p).get_fdata()[1, 2, 3]
    np.float64(23.0)
    """
    import nibabel as nib

    channels, *spatial = array.shape
    shape = list(crop) if crop is not None else list(spatial)
    spatial_dims = len(spatial)
    if affine is None:
        affine = np.eye(4)
    out_dtype = np.dtype(dtype)
    if channels == 1:
        nifti_shape = tuple(shape)
    elif spatial_dims == 2:
        nifti_shape = (*shape, 1, channels)
    else:
        nifti_shape = (*shape, channels)
    header = nib.Nifti1Image(np.zeros((1,) * len(nifti_shape), out_dtype), affine).header
    header.set_data_shape(nifti_shape)
    header.set_data_dtype(out_dtype)
    zooms = list(np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))[: len(nifti_shape)]
    header.set_zooms(tuple(zooms) + (1.0,) * (len(nifti_shape) - len(zooms)))
    header["descrip"] = description[:79].encode()
    header.set_xyzt_units("mm")
    header["vox_offset"] = 352
    gz = str(path).endswith(".gz")
    info = np.iinfo(out_dtype) if out_dtype.kind in "iu" else None
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        stream: Any = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) if gz else raw
        try:
            header.write_to(stream)
            stream.write(b"\0" * (352 - 348 - 4))
            last = shape[-1]
            per_slab = max(1, (1 << 20) // max(1, int(np.prod(shape[:-1]))))  # ~4 MiB
            for c in range(channels):
                for s0 in range(0, last, per_slab):
                    s1 = min(last, s0 + per_slab)
                    index = (c,) + tuple(slice(0, n) for n in shape[:-1]) + (slice(s0, s1),)
                    slab = np.array(array[index], dtype=np.float32)
                    release_pages(array)
                    if transform is not None:
                        slab = transform(slab)
                    if info is not None:
                        slab = np.clip(np.rint(slab), info.min, info.max)
                    stream.write(slab.astype(out_dtype).tobytes(order="F"))
        finally:
            if gz:
                stream.close()
        raw.flush()
        os.fsync(raw.fileno())


# ----------------------------------------------------------------------------- public API
@dataclass
class VolumeResult:
    """What :func:`generate_volume` / :func:`enhance_volume` wrote."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    seconds: float
    spacing: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resolve(model: Any) -> tuple[MultiScaleGAN, ModelPackage | None]:
    from medisynth.gans.multiscale import MultiScaleGAN
    from medisynth.package import ModelPackage, load_package

    package = None
    if isinstance(model, str | os.PathLike):
        model = load_package(model)
    if isinstance(model, ModelPackage):
        package, model = model, model.family
    if not isinstance(model, MultiScaleGAN):
        raise ConfigError(
            f"tiled volume generation needs a multiscale model, got {type(model).__name__}"
        )
    return model, package


def _output_dtype(family: MultiScaleGAN, dtype: str | None) -> str:
    if dtype is not None:
        return dtype
    return output_dtype(family.data.source_dtype)


def _as_size(size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    sizes = (int(size),) * spatial_dims if isinstance(size, int) else tuple(int(s) for s in size)
    if len(sizes) != spatial_dims or min(sizes) < 1:
        raise ConfigError(f"size {size} must give {spatial_dims} positive sides for this model")
    return sizes


@contextlib.contextmanager
def _timer() -> Iterator[list[float]]:
    box = [time.perf_counter()]
    yield box
    box[0] = time.perf_counter() - box[0]


def generate_volume(
    model: str | os.PathLike[str] | ModelPackage | MultiScaleGAN,
    size: int | Sequence[int],
    out_path: str | os.PathLike[str],
    *,
    seed: int = 0,
    condition: np.ndarray | None = None,
    label: int | None = None,
    tile: int = 64,
    overlap: int = 8,
    batch: int = 2,
    ramp: Ramp = "linear",
    dtype: str | None = None,
    spacing: Sequence[float] | None = None,
    precision: Precision = "fp32",
    progress: bool = False,
) -> VolumeResult:
    """Generate one volume (or 2D image) of ``size`` with a multi-scale model, as NIfTI.

    Any size works: the grid is rounded up to the model's unit (``4 * 2**levels``) for
    generation and cropped back. Intermediate levels and the output live in memmaps beside
    ``out_path``; the NIfTI is written slab by slab and renamed into place. Values are mapped
    back to the training data's units (``dtype`` defaults to the source's integer type, else
    float32).

    Args:
        model: a model package folder, a loaded package, or a trained family.
        size: output grid, one int (cube/square) or one per axis; e.g. 512 for 512^3.
        out_path: ``.nii`` or ``.nii.gz`` target.
        seed: noise seed (same seed, same volume).
        condition: ``(Cc, *size)`` condition volume (conditional models), in model units.
        label: the class to generate (class-conditional models; default 0).
        tile, overlap, batch, ramp: tiling (see :class:`TileSettings`).
        spacing: voxel size in mm (default: the training data's, else 1).
        precision: ``"fp32"`` (exact, reproducible across machines), ``"bf16"`` or ``"auto"``
            (bf16 where the CPU has it natively: several times faster, values differ ~1e-2).

    >>> from medisynth.gans.multiscale import MultiScaleGAN, MultiScaleConfig
    >>> from medisynth.gans.base import DataInfo
    >>> gan = MultiScaleGAN.build(MultiScaleConfig(levels=1, latent_dim=4, g0_channels=4,
    ...     g_channels=4, res_blocks=1), DataInfo(channels=1, spatial_shape=(16, 16, 16)),
    ...     training=False)
    >>> path = __import__("tempfile").mkdtemp() + "/big.nii.gz"
    >>> generate_volume(gan, (40, 24, 16), path, tile=16).shape
    (40, 24, 16)
    """
    family, package = _resolve(model)
    spatial_dims = family.data.spatial_dims
    sizes = _as_size(size, spatial_dims)
    unit = NOISE_FACTOR * 2**family.levels
    padded = tuple(math.ceil(s / unit) * unit for s in sizes)
    if condition is not None:
        condition = np.asarray(condition, dtype=np.float32)
        if tuple(condition.shape[1:]) != sizes:
            raise ConfigError(f"condition grid {condition.shape[1:]} != size {sizes}")
        pad = [(0, 0)] + [(0, p - s) for p, s in zip(padded, sizes, strict=True)]
        condition = np.pad(condition, pad, mode="edge")
    out_path = Path(out_path)
    spacing = tuple(spacing or family.data.spacing or (1.0,) * spatial_dims)
    affine = np.eye(4)
    for axis, step in enumerate(spacing[:3]):
        affine[axis, axis] = float(step)
    settings = TileSettings(tile=tile, overlap=overlap, batch=batch, ramp=ramp)
    out_dtype = _output_dtype(family, dtype)
    autocast, channels_last = precision_context(precision, family.context.device)
    if channels_last:
        fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        family.inference_generator().to(memory_format=fmt)  # type: ignore[call-overload]
    with (
        _timer() as elapsed,
        bounded_heap(),
        Scratch(out_path.parent, prefix=f".{out_path.name}") as scratch,
    ):
        final = scratch.zeros((family.data.channels, *padded), order="F")
        synthesize(
            family.inference_generator(),
            padded,
            noise=torch.Generator().manual_seed(seed),
            condition=condition,
            label=(label or 0) if family.num_classes else label,
            settings=settings,
            scratch=scratch,
            out=final,
            device=family.context.device,
            autocast=autocast,
            channels_last=channels_last,
            progress=progress,
        )
        write_nifti_streamed(
            out_path,
            final,
            affine,
            out_dtype,
            transform=_to_units(family),
            crop=sizes,
        )
    log.info("wrote %s %s in %.1f s", out_path, sizes, elapsed[0])
    return VolumeResult(str(out_path), sizes, out_dtype, round(elapsed[0], 3), spacing)


def _to_units(family: MultiScaleGAN) -> Callable[[np.ndarray], np.ndarray]:
    imap = family.data.intensity_map

    def convert(slab: np.ndarray) -> np.ndarray:
        return np.asarray(imap.inverse(np.clip(slab, -1.0, 1.0)), dtype=np.float32)

    return convert


def enhance_volume(
    model: str | os.PathLike[str] | ModelPackage | MultiScaleGAN,
    volume: np.ndarray | str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    factor: int | None = None,
    affine: np.ndarray | None = None,
    tile: int = 64,
    overlap: int = 8,
    batch: int = 2,
    ramp: Ramp = "linear",
    dtype: str | None = None,
    precision: Precision = "fp32",
    progress: bool = False,
) -> VolumeResult:
    """Super-resolve a whole low-resolution volume by ``factor`` (a power of 2, at most
    ``2**levels``; default ``2**levels``) with the model's top patch levels, tile by tile.

    ``volume`` is a ``(C, *spatial)`` array in the training data's units, or an image file
    (read with :func:`medisynth.data.io.read_image`; its affine is kept, voxels get ``factor``
    times smaller). The output is NIfTI in the same units.

    >>> from medisynth.gans.multiscale import MultiScaleGAN, MultiScaleConfig
    >>> from medisynth.gans.base import DataInfo
    >>> gan = MultiScaleGAN.build(MultiScaleConfig(levels=2, latent_dim=4, g0_channels=4,
    ...     g_channels=4, res_blocks=1), DataInfo(channels=1, spatial_shape=(32, 32, 32)),
    ...     training=False)
    >>> low = np.random.rand(1, 10, 12, 14).astype(np.float32)
    >>> path = __import__("tempfile").mkdtemp() + "/sr.nii"
    >>> enhance_volume(gan, low, path, factor=4).shape
    (40, 48, 56)
    """
    family, package = _resolve(model)
    if not isinstance(volume, np.ndarray):
        from medisynth.data.io import read_image

        image = read_image(Path(volume))
        volume, affine = image.array, image.affine if affine is None else affine
    levels = family.levels
    factor = factor or 2**levels
    k = int(round(math.log2(factor)))
    if factor < 2 or 2**k != factor or k > levels:
        raise ConfigError(
            f"factor must be 2, 4, ... up to {2**levels} for this model, got {factor}"
        )
    volume = np.asarray(volume, dtype=np.float32)
    spatial_dims = family.data.spatial_dims
    if volume.ndim != spatial_dims + 1 or volume.shape[0] != family.data.channels:
        raise ConfigError(
            f"volume must be (C={family.data.channels}, {spatial_dims} spatial axes), "
            f"got {volume.shape}"
        )
    start = np.clip(family.data.intensity_map.forward(volume), -1.0, 1.0).astype(np.float32)
    size = tuple(s * factor for s in start.shape[1:])
    base = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    scale = np.eye(4)
    for axis in range(min(3, spatial_dims)):
        scale[axis, axis] = 1.0 / factor
        scale[axis, 3] = (1.0 / factor - 1.0) / 2.0  # voxel centres of the finer grid
    new_affine = base @ scale
    out_path = Path(out_path)
    settings = TileSettings(tile=tile, overlap=overlap, batch=batch, ramp=ramp)
    out_dtype = _output_dtype(family, dtype)
    autocast, channels_last = precision_context(precision, family.context.device)
    if channels_last:
        fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        family.inference_generator().to(memory_format=fmt)  # type: ignore[call-overload]
    generator = family.inference_generator()
    if generator.cond_channels:
        raise ConfigError("enhance_volume works with unconditional models; use generate_volume")
    with (
        _timer() as elapsed,
        bounded_heap(),
        Scratch(out_path.parent, prefix=f".{out_path.name}") as scratch,
    ):
        final = scratch.zeros((family.data.channels, *size), order="F")
        # the start volume stands for level (levels - k); only the top k refiners run
        synthesize(
            _TopLevels(generator, k),
            size,
            start=start,
            settings=settings,
            scratch=scratch,
            out=final,
            device=family.context.device,
            autocast=autocast,
            channels_last=channels_last,
            progress=progress,
        )
        write_nifti_streamed(out_path, final, new_affine, out_dtype, transform=_to_units(family))
    spacing = tuple(float(v) for v in np.sqrt((new_affine[:3, :3] ** 2).sum(axis=0)))
    return VolumeResult(str(out_path), size, out_dtype, round(elapsed[0], 3), spacing)


class _TopLevels(MultiScaleGenerator):
    """A view of a generator's top ``k`` refiners as a ``k``-level generator (shares weights)."""

    def __init__(self, generator: MultiScaleGenerator, k: int) -> None:  # noqa: D107
        torch.nn.Module.__init__(self)
        self.levels = k
        self.latent_dim = generator.latent_dim
        self.spatial_dims = generator.spatial_dims
        self.cond_channels = generator.cond_channels
        self.num_classes = generator.num_classes
        self.base = generator.base
        self.refiners = torch.nn.ModuleList(list(generator.refiners)[generator.levels - k :])


# ----------------------------------------------------------------------------- generate --size
def parse_size(text: str) -> tuple[int, ...]:
    """``"512"``, ``"512x512x256"`` or ``"512,512,256"`` -> a tuple of sides.

    >>> parse_size("512"), parse_size("256x256x128")
    ((512,), (256, 256, 128))
    """
    parts = [p for p in text.replace("x", ",").replace("X", ",").split(",") if p.strip()]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--size {text!r}: give sides like 512 or 512x512x256") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--size {text!r}: give sides like 512 or 512x512x256")
    return sizes


def generate_volumes(
    model: str | os.PathLike[str] | ModelPackage,
    n: int | None,
    out: str | os.PathLike[str],
    size: int | Sequence[int],
    *,
    seed: int = 0,
    fmt: str = "nifti",
    overwrite: bool = False,
    precision: Precision = "auto",
    progress: bool = False,
) -> GenerateResult:
    """``n`` volumes of ``size`` from a multiscale package into the folder ``out`` (the API behind
    ``medisynth generate MODEL -n N --size 512 --format nifti -o OUT``).

    Writes ``OUT/synthetic/synthetic_0001.nii.gz`` ... (volume ``i`` from seed ``seed + i - 1``),
    ``labels.csv`` and ``generation.json``, like :func:`medisynth.generate.generate` (through
    :class:`medisynth.output_set.OutputSet`). Returns a
    :class:`medisynth.output_set.GenerateResult`.
    """
    from datetime import datetime, timezone

    from medisynth.package import ModelPackage, load_package, software_versions

    if fmt != "nifti":
        raise ConfigError(f"--size writes NIfTI volumes; use --format nifti (got {fmt!r})")
    count = 1 if n is None else n
    if count < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    package = model if isinstance(model, ModelPackage) else load_package(model)
    family, _ = _resolve(package)
    sizes = tuple(size) if not isinstance(size, int) else (size,)
    if len(sizes) == 1:
        sizes = sizes * family.data.spatial_dims
    width = max(4, len(str(count)))
    files = [f"synthetic/synthetic_{index:0{width}d}.nii.gz" for index in range(1, count + 1)]
    rows = [("file", "label", "class")]
    classes = package.class_names if family.num_classes else ["synthetic"]
    with OutputSet.begin(out, files, labels_file=LABELS, overwrite=overwrite) as output:
        for index, name in enumerate(files, start=1):
            label = (index - 1) % len(classes)  # class-conditional models: classes in turn
            generate_volume(
                package,
                sizes,
                output.path(name),
                seed=seed + index - 1,
                label=label if family.num_classes else None,
                precision=precision,
                tile=family.config.tile,
                overlap=family.config.overlap,
                batch=family.config.tile_batch,
                ramp=family.config.ramp,
                progress=progress,
            )
            rows.append((name, str(label), classes[label]))
        output.write_labels(rows)
        result = GenerateResult(
            out_dir=str(output.folder),
            format="nifti",
            count=count,
            class_counts={c: len(range(i, count, len(classes))) for i, c in enumerate(classes)},
            files=files,
            labels_file=LABELS,
        )
        details = {key: value for key, value in result.to_dict().items() if key != "out_dir"}
        output.complete(
            {
                **details,
                "model_id": model_name(package.card),
                "model_fingerprint": package.card.get("data", {}).get("fingerprint", ""),
                "seed": seed,
                "size": list(sizes),
                "precision": precision,
                "tiling": {
                    "tile": family.config.tile,
                    "overlap": family.config.overlap,
                    "ramp": family.config.ramp,
                },
                "intensity_map": family.data.intensity_map.to_dict(),
                "synthetic": True,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": software_versions(),
            }
        )
    return result
