"""Images of any size from models that sample in tiles, written as NIfTI (``medisynth generate
--size``), and whole-volume refinement by their top levels.

The family does the tiled sampling in bounded memory (:meth:`GANFamily.sample_tiled
<medisynth.gans.base.GANFamily.sample_tiled>`; for the multi-scale patch GAN see
:mod:`medisynth.gans.multiscale_tiling`); this module gives it ``numpy.memmap`` arrays in
temporary files beside the target and writes the result as NIfTI slab by slab, then renames it
into place. Peak memory is the model, a few tiles and the pages of the arrays being touched.

* :func:`generate_volume`: a model -> one NIfTI image of any size (e.g. 512^3).
* :func:`enhance_volume`: whole-volume x2^k super-resolution of a given volume.
* :func:`generate_volumes`: a labelled set of such volumes, written by
  :class:`~medisynth.output_set.OutputSet` (``generation.json``, ``labels.csv``).
* :func:`write_nifti_streamed`: a (memmapped) array -> NIfTI, one slab in memory at a time.

>>> parse_size("512x512x256")
(512, 512, 256)
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medisynth.apply.common import generation_record, open_package
from medisynth.errors import ConfigError
from medisynth.files import atomic_path
from medisynth.gans import tiled_families
from medisynth.gans.base import GANFamily
from medisynth.gans.multiscale_tiling import (
    Ramp,
    Scratch,
    TileSettings,
    bounded_heap,
    release_pages,
)
from medisynth.output_set import LABELS, GenerateResult, OutputSet, output_dtype
from medisynth.package import ModelPackage
from medisynth.precision import Precision

log = logging.getLogger(__name__)

#: a tiled model: a package folder, a loaded package or a family
TiledModel = str | os.PathLike[str] | ModelPackage | GANFamily


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


# ----------------------------------------------------------------------------- one volume
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


def tiled_family(model: TiledModel) -> tuple[GANFamily, ModelPackage | None]:
    """The family of ``model`` (and its package, when given one), checked to declare
    ``tiled_volumes``."""
    package = None
    if isinstance(model, str | os.PathLike | ModelPackage):
        package = open_package(model)
        model = package.family
    if not model.tiled_volumes:
        raise ConfigError(
            f"images of any size (--size) need a model that samples in tiles (a "
            f"{' or '.join(tiled_families())} model); this is a {model.name()} model"
        )
    return model, package


def _output_dtype(family: GANFamily, dtype: str | None) -> str:
    return output_dtype(family.data.source_dtype) if dtype is None else dtype


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


def _to_units(family: GANFamily) -> Callable[[np.ndarray], np.ndarray]:
    imap = family.data.intensity_map

    def convert(slab: np.ndarray) -> np.ndarray:
        return np.asarray(imap.inverse(np.clip(slab, -1.0, 1.0)), dtype=np.float32)

    return convert


def _edge_padded(
    condition: np.ndarray | None, sizes: tuple[int, ...], grid: tuple[int, ...]
) -> np.ndarray | None:
    """``condition`` ``(Cc, *sizes)`` edge-padded to the generated ``grid``."""
    if condition is None:
        return None
    condition = np.asarray(condition, dtype=np.float32)
    if tuple(condition.shape[1:]) != sizes:
        raise ConfigError(f"condition grid {condition.shape[1:]} != size {sizes}")
    pad = [(0, 0)] + [(0, p - s) for p, s in zip(grid, sizes, strict=True)]
    return np.pad(condition, pad, mode="edge")


def _affine(spacing: Sequence[float]) -> np.ndarray:
    affine = np.eye(4)
    for axis, step in enumerate(spacing[:3]):
        affine[axis, axis] = float(step)
    return affine


def generate_volume(
    model: TiledModel,
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
    """Generate one volume (or 2D image) of ``size`` with a tiled model, as NIfTI.

    Any size works: the grid is rounded up to the model's unit (``4 * 2**levels`` for the
    multi-scale GAN) for generation and cropped back. Intermediate levels and the output live in
    memmaps beside ``out_path``; the NIfTI is written slab by slab and renamed into place. Values
    are mapped back to the training data's units (``dtype`` defaults to the source's integer
    type, else float32).

    Args:
        model: a model package folder, a loaded package, or a trained family.
        size: output grid, one int (cube/square) or one per axis; e.g. 512 for 512^3.
        out_path: ``.nii`` or ``.nii.gz`` target.
        seed: noise seed (same seed, same volume).
        condition: ``(Cc, *size)`` condition volume (conditional models), in model units.
        label: the class to generate (class-conditional models; default 0).
        tile, overlap, batch, ramp: tiling (see
            :class:`~medisynth.gans.multiscale_tiling.TileSettings`).
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
    family, _ = tiled_family(model)
    spatial_dims = family.data.spatial_dims
    sizes = _as_size(size, spatial_dims)
    grid = family.tiled_grid(sizes)
    condition = _edge_padded(condition, sizes, grid)
    spacing = tuple(spacing or family.data.spacing or (1.0,) * spatial_dims)
    out_dtype = _output_dtype(family, dtype)
    seconds = _sample_to_nifti(
        family,
        Path(out_path),
        grid,
        _affine(spacing),
        out_dtype,
        crop=sizes,
        generator=torch.Generator().manual_seed(seed),
        condition=condition,
        label=label,
        settings=TileSettings(tile=tile, overlap=overlap, batch=batch, ramp=ramp),
        precision=precision,
        progress=progress,
    )
    log.info("wrote %s %s in %.1f s", out_path, sizes, seconds)
    return VolumeResult(str(out_path), sizes, out_dtype, round(seconds, 3), spacing)


def _sample_to_nifti(
    family: GANFamily,
    out_path: Path,
    grid: tuple[int, ...],
    affine: np.ndarray,
    dtype: str,
    crop: Sequence[int] | None = None,
    **sample: Any,
) -> float:
    """``family.sample_tiled(**sample)`` into a memmap of ``grid`` beside ``out_path`` (and its
    intermediate arrays too), written as NIfTI in the data's units; returns the seconds taken."""
    with (
        _timer() as elapsed,
        bounded_heap(),
        Scratch(out_path.parent, prefix=f".{out_path.name}") as scratch,
    ):
        final = scratch.zeros((family.data.channels, *grid), order="F")
        family.sample_tiled(final, scratch=scratch, **sample)
        transform = _to_units(family)
        write_nifti_streamed(out_path, final, affine, dtype, transform=transform, crop=crop)
    return elapsed[0]


def enhance_volume(
    model: TiledModel,
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
    """Super-resolve a whole low-resolution volume by ``factor`` (one of the model's
    :meth:`~medisynth.gans.base.GANFamily.refine_factors`, for the multi-scale GAN 2, 4, ... up
    to ``2**levels``; default the largest) with the model's top levels, tile by tile.

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
    family, _ = tiled_family(model)
    if not isinstance(volume, np.ndarray):
        from medisynth.data.io import read_image

        image = read_image(Path(volume))
        volume, affine = image.array, image.affine if affine is None else affine
    factors = family.refine_factors()
    factor = factor or max(factors, default=0)
    if factor not in factors:
        raise ConfigError(
            f"factor must be one of {', '.join(map(str, factors)) or 'none'} for this model, "
            f"got {factor}"
        )
    start = _start_volume(family, volume)
    size = tuple(s * factor for s in start.shape[1:])
    new_affine = _refined_affine(affine, factor, family.data.spatial_dims)
    out_dtype = _output_dtype(family, dtype)
    seconds = _sample_to_nifti(
        family,
        Path(out_path),
        size,
        new_affine,
        out_dtype,
        start=start,
        settings=TileSettings(tile=tile, overlap=overlap, batch=batch, ramp=ramp),
        precision=precision,
        progress=progress,
    )
    spacing = tuple(float(v) for v in np.sqrt((new_affine[:3, :3] ** 2).sum(axis=0)))
    return VolumeResult(str(out_path), size, out_dtype, round(seconds, 3), spacing)


def _start_volume(family: GANFamily, volume: np.ndarray) -> np.ndarray:
    """``volume`` in the training data's units, checked and scaled to [-1, 1]."""
    volume = np.asarray(volume, dtype=np.float32)
    spatial_dims, channels = family.data.spatial_dims, family.data.channels
    if volume.ndim != spatial_dims + 1 or volume.shape[0] != channels:
        raise ConfigError(
            f"volume must be (C={channels}, {spatial_dims} spatial axes), got {volume.shape}"
        )
    return np.clip(family.data.intensity_map.forward(volume), -1.0, 1.0).astype(np.float32)


def _refined_affine(affine: np.ndarray | None, factor: int, spatial_dims: int) -> np.ndarray:
    """The voxel-to-world matrix of a grid ``factor`` times finer (voxel centres of the finer
    grid, field of view kept)."""
    base = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    scale = np.eye(4)
    for axis in range(min(3, spatial_dims)):
        scale[axis, axis] = 1.0 / factor
        scale[axis, 3] = (1.0 / factor - 1.0) / 2.0  # voxel centres of the finer grid
    return base @ scale


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
    """``n`` volumes of ``size`` from a tiled model package into the folder ``out`` (the API
    behind ``medisynth generate MODEL -n N --size 512 --format nifti -o OUT``).

    Writes ``OUT/synthetic/synthetic_0001.nii.gz`` ... (volume ``i`` from seed ``seed + i - 1``;
    class-conditional models make the classes in turn), ``labels.csv`` and ``generation.json``,
    like :func:`medisynth.apply.generate.generate` (through
    :class:`medisynth.output_set.OutputSet`). Returns a
    :class:`medisynth.output_set.GenerateResult`.
    """
    if fmt != "nifti":
        raise ConfigError(f"--size writes NIfTI volumes; use --format nifti (got {fmt!r})")
    count = 1 if n is None else n
    if count < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    package = open_package(model)
    family, _ = tiled_family(package)
    sizes = tuple(size) if not isinstance(size, int) else (size,)
    if len(sizes) == 1:
        sizes = sizes * family.data.spatial_dims
    width = max(4, len(str(count)))
    files = [f"synthetic/synthetic_{index:0{width}d}.nii.gz" for index in range(1, count + 1)]
    classes = package.class_names if family.conditional else ["synthetic"]
    settings = family.tile_settings()
    with OutputSet.begin(out, files, labels_file=LABELS, overwrite=overwrite) as output:
        rows = [("file", "label", "class")]
        for index, name in enumerate(files, start=1):
            label = (index - 1) % len(classes)  # class-conditional models: classes in turn
            generate_volume(
                package,
                sizes,
                output.path(name),
                seed=seed + index - 1,
                label=label if family.conditional else None,
                precision=precision,
                tile=settings.tile,
                overlap=settings.overlap,
                batch=settings.batch,
                ramp=settings.ramp,
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
        tiling = {"tile": settings.tile, "overlap": settings.overlap, "ramp": settings.ramp}
        output.complete(
            {
                **details,
                **generation_record(
                    package, seed, size=list(sizes), precision=precision, tiling=tiling
                ),
            }
        )
    return result
