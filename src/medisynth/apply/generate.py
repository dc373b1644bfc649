"""Generate a labelled synthetic dataset from a model package, in the class balance asked for.

Images are mapped back to the training data's units (the inverse intensity map) and written as
PNG (16-bit where the source had more than 8 bits), NIfTI, or a MedMNIST-layout ``.npz``; a
``labels.csv`` (PNG/NIfTI) and ``generation.json`` (how the set was made) go with them.

Layout of ``OUT``::

    png/nifti:  OUT/<class name>/synthetic_000001.png ...   OUT/labels.csv   OUT/generation.json
    npz:        OUT/synthetic.npz (train_images, train_labels)               OUT/generation.json
    dicom:      OUT/dicom/IM00001.dcm ... (labels in Image Comments)         OUT/generation.json

The folder is written by :class:`medisynth.output_set.OutputSet`: ``generation.json`` says
``"status": "incomplete"`` until the last file is written, so an interrupted run is never
mistaken for a complete set. Only models whose family declares ``task = "sample"`` generate;
with ``size``, models that sample in tiles make images of any size
(:mod:`medisynth.apply.volumes`).

>>> parse_class_balance("0.5,0.5", ["malignant", "benign"], 5)
[3, 2]
>>> parse_class_balance("benign:700,malignant:300", ["malignant", "benign"], None)
[300, 700]
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from medisynth.apply.common import Model, generation_record, open_package, require_task
from medisynth.apply.volumes import generate_volumes
from medisynth.errors import ConfigError
from medisynth.gans import family_names, get_family
from medisynth.output_set import LABELS, GenerateResult, OutputSet, model_name, output_dtype
from medisynth.package import ModelPackage
from medisynth.precision import Precision

log = logging.getLogger(__name__)

FORMATS = ("png", "nifti", "npz", "dicom")
OutputFormat = Literal["png", "nifti", "npz"]


def largest_remainder(weights: Sequence[float], n: int) -> list[int]:
    """Split ``n`` into integer counts proportional to ``weights`` (they add up to exactly ``n``).

    >>> largest_remainder([1, 1, 1], 10)
    [4, 3, 3]
    """
    total = float(sum(weights))
    exact = [n * w / total for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def parse_class_balance(
    spec: str | Sequence[float] | None, class_names: Sequence[str], n: int | None
) -> list[int]:
    """Images per class from a balance spec.

    * ``"0.5,0.5"`` or ``"1,3"``: one weight per class, in class order (normalised);
    * ``"0:300,1:700"`` or ``"benign:700,malignant:300"``: per-class entries by number or name;
      without ``n`` the numbers are counts, with ``n`` they are weights;
    * a sequence of numbers, one per class in class order: weights with ``n``, counts without;
    * ``None``: equal classes.

    >>> parse_class_balance([1, 3], ["malignant", "benign"], 8)
    [2, 6]
    """
    k = len(class_names)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        if n is None:
            raise ConfigError(
                "give the number of images (-n) or per-class counts (--class-balance)"
            )
        return largest_remainder([1.0] * k, n)
    if isinstance(spec, str):
        weights, keyed = _parse_balance_text(spec, class_names)
    else:
        weights, keyed = [float(w) for w in spec], True
        if len(weights) != k:
            raise ConfigError(
                f"class balance {list(spec)} has {len(weights)} values but the model has {k} "
                f"classes ({', '.join(class_names)})"
            )
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"class balance {spec!r}: values must be >= 0 and not all 0")
    if n is None:
        if not keyed or any(w != int(w) for w in weights):
            raise ConfigError(
                f"class balance {spec!r}: without -n, give whole counts as 'class:count,...'"
            )
        return [int(w) for w in weights]
    return largest_remainder(weights, n)


def _parse_balance_text(spec: str, class_names: Sequence[str]) -> tuple[list[float], bool]:
    """The weights per class of a ``"w0,w1,..."`` or ``"class:value,..."`` spec, and whether it
    was the keyed form."""
    k = len(class_names)
    entries = [e.strip() for e in spec.split(",") if e.strip()]
    weights = [0.0] * k
    keyed = [":" in e for e in entries]
    if any(keyed) and not all(keyed):
        raise ConfigError(f"class balance {spec!r}: use either 'w0,w1,...' or 'class:value,...'")
    try:
        if all(keyed):
            seen: set[int] = set()
            for entry in entries:
                key, _, raw = entry.partition(":")
                index = _class_index(key.strip(), class_names)
                if index in seen:
                    raise ConfigError(
                        f"class balance {spec!r} gives class {class_names[index]!r} twice; "
                        "give each class once"
                    )
                seen.add(index)
                weights[index] = float(raw)
        else:
            if len(entries) != k:
                raise ConfigError(
                    f"class balance {spec!r} has {len(entries)} values but the model has {k} "
                    f"classes ({', '.join(class_names)})"
                )
            weights = [float(e) for e in entries]
    except ValueError:
        raise ConfigError(f"class balance {spec!r}: values must be numbers") from None
    return weights, all(keyed)


def _class_index(key: str, class_names: Sequence[str]) -> int:
    if key in class_names:
        return list(class_names).index(key)
    if key.isdigit() and int(key) < len(class_names):
        return int(key)
    raise ConfigError(
        f"unknown class {key!r}; the model's classes are "
        + ", ".join(f"{i}={name}" for i, name in enumerate(class_names))
    )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "class"


def _sample(
    package: ModelPackage,
    counts: Sequence[int],
    seed: int,
    batch_size: int,
    progress: bool,
    spatial_shape: Sequence[int] | None = None,
    truncation: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images in source units and labels, ``counts[c]`` of class ``c`` in class order
    (``truncation``: the truncation psi, for families that declare it)."""
    total = int(sum(counts))
    labels = np.repeat(np.arange(len(counts)), counts)
    noise = torch.Generator().manual_seed(seed)
    chunks: list[np.ndarray] = []
    bar = tqdm(total=total, desc="generating", unit="img", disable=not progress)
    for start in range(0, total, batch_size):
        part = labels[start : start + batch_size]
        label_tensor = torch.from_numpy(part) if package.conditional else None
        if truncation is None:
            images = package.family.sample(len(part), label_tensor, generator=noise)
        else:
            images = package.family.sample_truncated(len(part), label_tensor, noise, truncation)
        if spatial_shape is not None and tuple(images.shape[2:]) != tuple(spatial_shape):
            images = _resize(images, spatial_shape)
        chunks.append(package.to_source_units(images))
        bar.update(len(part))
    bar.close()
    values = np.concatenate(chunks) if chunks else np.empty((0,))
    return values, labels


def _resize(images: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """(Bi/tri)linear resampling of ``(N, C, *spatial)`` images (antialiased when shrinking 2D)."""
    shape = tuple(int(s) for s in spatial_shape)
    if len(shape) != images.ndim - 2:
        raise ConfigError(
            f"the model makes {images.ndim - 2}D images {tuple(images.shape[2:])}, "
            f"not {len(shape)}D {shape}"
        )
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    shrink = len(shape) == 2 and any(s < t for s, t in zip(shape, images.shape[2:], strict=True))
    return torch.nn.functional.interpolate(
        images, size=shape, mode=mode, align_corners=False, antialias=shrink
    )


def output_class_names(package: ModelPackage) -> list[str]:
    """The classes a package generates (``["synthetic"]`` for an unconditional model)."""
    return list(package.class_names) if package.conditional else ["synthetic"]


def _package_and_counts(
    model: Model,
    n: int | None,
    class_balance: str | Sequence[float] | None,
    truncation: float | None = None,
) -> tuple[ModelPackage, list[int]]:
    """The loaded package (checked to sample from noise, and to truncate when asked) and the
    number of images per class."""
    if n is not None and n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    if truncation is not None and not 0.0 <= truncation <= 1.0:
        raise ConfigError(
            f"--truncation {truncation}: give a psi within [0, 1] (1 = no truncation, "
            "0 = each class's mean image)"
        )
    package = open_package(model)
    require_task(package, "sample", "generate")
    if truncation is not None and not package.family.truncation:
        able = ", ".join(name for name in family_names() if get_family(name).truncation)
        raise ConfigError(
            f"--truncation: a {package.family.name()} model has no truncation trick (families "
            f"with one: {able or 'none'}); drop --truncation"
        )
    class_names = output_class_names(package)
    if not package.conditional and class_balance:
        raise ConfigError("this model is unconditional (one class); drop --class-balance")
    counts = parse_class_balance(class_balance, class_names, n)
    return package, counts


def generate_arrays(
    model: Model,
    n: int | None,
    class_balance: str | Sequence[float] | None = None,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
    spatial_shape: Sequence[int] | None = None,
    truncation: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic images and labels in memory: what :func:`generate` would write, as arrays.

    Args:
        model, n, seed, batch_size: as for :func:`generate`.
        class_balance: as for :func:`generate`, or weights per class in class order (see
            :func:`parse_class_balance`).
        spatial_shape: resample the images to this size ((bi/tri)linear, on the [-1, 1] values,
            before the inverse intensity map); default: the model's own size.
        truncation: as for :func:`generate`.

    Returns:
        ``(images, labels)``: ``(n, C, *spatial)`` float32 in the training data's units (the
        inverse intensity map applied, not rounded to the stored type), and ``(n,)`` class
        indices (all 0 for an unconditional model), classes in order.

    >>> import tempfile, pathlib
    >>> from medisynth.config import RunConfig
    >>> from medisynth.gans import get_family
    >>> from medisynth.gans.base import DataInfo
    >>> from medisynth.package import save_package
    >>> cfg = RunConfig.from_dict({"model": {"g_channels": 4, "latent_dim": 8}})
    >>> data = DataInfo(channels=1, spatial_shape=(16, 16), class_names=["a", "b"])
    >>> gan = get_family("dcgan").build(cfg.model, data, training=False)
    >>> folder = save_package(pathlib.Path(tempfile.mkdtemp()) / "model", gan, cfg)
    >>> images, labels = generate_arrays(folder, 5, "1,4", seed=0, spatial_shape=(12, 12))
    >>> images.shape, labels.tolist()
    ((5, 1, 12, 12), [0, 1, 1, 1, 1])
    """
    package, counts = _package_and_counts(model, n, class_balance, truncation)
    return _sample(package, counts, seed, batch_size, progress, spatial_shape, truncation)


def generate(
    model: Model,
    n: int | None,
    out: str | os.PathLike[str],
    fmt: str = "png",
    class_balance: str | None = None,
    seed: int = 0,
    batch_size: int = 256,
    overwrite: bool = False,
    progress: bool = False,
    size: Sequence[int] | None = None,
    precision: Precision = "auto",
    truncation: float | None = None,
) -> GenerateResult:
    """Write ``n`` synthetic images with labels into the folder ``out`` (the API behind
    ``medisynth generate``).

    Args:
        model: a model package folder (or a loaded :class:`ModelPackage`).
        n: number of images (may be omitted when ``class_balance`` gives counts).
        out: output folder; must be new or empty (``overwrite`` replaces an earlier generated set).
        fmt: ``"png"``, ``"nifti"``, ``"npz"`` or ``"dicom"``.
        class_balance: see :func:`parse_class_balance`; default: equal classes.
        seed: noise seed; the same seed gives the same images.
        size: output grid for models that sample in tiles (any size; NIfTI only; see
            :func:`medisynth.apply.volumes.generate_volumes`).
        precision: with ``size``: ``"auto"``, ``"bf16"`` or ``"fp32"`` for the tiled networks.
        truncation: the truncation psi in [0, 1] for families that declare ``truncation``
            (styles pulled towards each class's mean style; 0: the class's mean image).
    """
    if size is not None and truncation is not None:
        raise ConfigError("--truncation and --size do not go together; drop one of them")
    if size is not None:
        return generate_volumes(
            model, n, out, size, seed=seed, fmt=fmt, overwrite=overwrite, progress=progress,
            precision=precision,
        )  # fmt: skip
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    package, counts = _package_and_counts(model, n, class_balance, truncation)
    class_names = output_class_names(package)
    total = sum(counts)
    names = _file_names(fmt, counts, class_names)
    labels_file = LABELS if fmt in ("png", "nifti") else None
    with OutputSet.begin(out, names, labels_file=labels_file, overwrite=overwrite) as output:
        values, labels = _sample(package, counts, seed, batch_size, progress, None, truncation)
        storage_note = _write_images(package, fmt, output, names, values, labels, class_names)
        class_counts = {name: int(c) for name, c in zip(class_names, counts, strict=True)}
        result = GenerateResult(
            out_dir=str(output.folder),
            format=fmt,
            count=total,
            class_counts=class_counts,
            files=names,
            labels_file=labels_file,
        )
        details = {key: value for key, value in result.to_dict().items() if key != "out_dir"}
        extra = {} if truncation is None else {"truncation_psi": truncation}
        record = generation_record(
            package, seed, class_names=class_names, storage=storage_note, **extra
        )
        output.complete({**details, **record})
    log.info("wrote %d synthetic images (%s) to %s: %s", total, fmt, out, class_counts)
    return result


def _file_names(fmt: str, counts: Sequence[int], class_names: Sequence[str]) -> list[str]:
    """The files of a set of ``counts[c]`` images of class ``c``, in class order."""
    total = sum(counts)
    if fmt == "dicom":
        return [f"dicom/IM{index:05d}.dcm" for index in range(1, total + 1)]
    if fmt == "npz":
        return ["synthetic.npz"]
    labels = np.repeat(np.arange(len(counts)), counts)
    folders = [_safe_name(name) for name in class_names]
    width = max(6, len(str(total)))
    suffix = ".png" if fmt == "png" else ".nii.gz"
    return [
        f"{folders[label]}/synthetic_{index:0{width}d}{suffix}"
        for index, label in enumerate(labels, start=1)
    ]


def _write_images(
    package: ModelPackage,
    fmt: str,
    output: OutputSet,
    names: Sequence[str],
    values: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Write the images (and labels file) of one set; returns the record's storage note."""
    data = package.data
    name = model_name(package.card)
    if fmt == "dicom":
        from medisynth.export.dicom import export_dicom_images

        modality = data.modality if data.modality and data.modality not in ("CT", "MR") else "OT"
        files = export_dicom_images(
            values,
            output.folder / "dicom",
            model_id=name,
            modality=modality,
            series_description=f"Synthetic {', '.join(class_names)}"[:64],
            labels=[int(v) for v in labels],
        )
        written = [f.relative_to(output.folder).as_posix() for f in files]
        if written != list(names):
            raise RuntimeError(f"the DICOM writer chose other file names: {written[:2]}")
        return {"iod": "Secondary Capture", "labels": "Image Comments"}
    dtype = output_dtype(data.source_dtype)
    if fmt == "npz":
        from medisynth.export.npz import write_medmnist_npz

        write_medmnist_npz(output.path(names[0]), values, labels, dtype=dtype)
        return {"dtype": dtype}
    rows = [("file", "label", "class")]
    note: dict[str, Any]
    if fmt == "png":
        from medisynth.export.png import png_storage, write_png

        storage = png_storage(data.source_dtype, data.intensity_map.low, data.intensity_map.high)
        note = asdict(storage)
        for file, image, label in zip(names, values, labels, strict=True):
            write_png(output.path(file), image, storage=storage)
            rows.append((file, str(int(label)), class_names[label]))
    else:
        from medisynth.export.nifti import write_nifti

        note = {"dtype": dtype}
        for file, image, label in zip(names, values, labels, strict=True):
            write_nifti(
                output.path(file),
                image,
                spacing=data.spacing,
                dtype=dtype,
                description=f"medisynth synthetic; model {name}",
            )
            rows.append((file, str(int(label)), class_names[label]))
    output.write_labels(rows)
    return note
