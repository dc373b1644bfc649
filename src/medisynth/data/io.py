"""Reading medical images: NIfTI, DICOM, PNG/TIFF/JPEG, MedMNIST npz and labelled folders.

:func:`read_image` reads any supported file, or a DICOM series folder, into an
:class:`~medisynth.data.image.Image`: float32 values as stored (HU for CT, 16-bit and float kept),
spacing, a RAS+ affine, modality, metadata and a fingerprint of the source. The format is told
from the file's content, and a content that contradicts the extension is an error, as is any
corrupt, truncated or oversized file: each raises a :class:`~medisynth.errors.ReadError` naming
the file, the problem and what to do.

>>> import numpy as np, nibabel as nib, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t1.nii.gz"
>>> nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.int16), np.diag([2.0, 2.0, 3.0, 1.0])), path)
>>> img = read_image(path, modality="MR")
>>> img.array.shape, img.spacing, img.source_dtype
((1, 4, 5, 6), (2.0, 2.0, 3.0), 'int16')
"""

from __future__ import annotations

import csv
import gzip
import logging
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medisynth.data.dicom import is_dicom_file, read_dicom_file, read_dicom_series
from medisynth.data.image import Image, LabeledArrays, combine_fingerprints, sha256_file
from medisynth.data.limits import check_elements
from medisynth.errors import ConfigError, ReadError, UnsupportedFormatError

log = logging.getLogger(__name__)

#: deflate cannot compress better than about 1032:1; a gzip claiming more is corrupt.
_MAX_DEFLATE_RATIO = 1032

_EXTENSIONS: dict[str, str] = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".mgz": "mgh",
    ".mgh": "mgh",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".ima": "dicom",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".gif": "gif",
    ".bmp": "bmp",
    ".npz": "npz",
    ".npy": "npy",
}
_RASTER = {"png", "jpeg", "tiff", "gif", "bmp"}
SUPPORTED = (
    "NIfTI (.nii, .nii.gz), MGH (.mgz), DICOM, PNG, JPEG, TIFF, GIF, BMP, .npy, MedMNIST .npz"
)


def format_from_extension(path: Path) -> str | None:
    """The format an extension names (``".nii.gz"`` counts as one), or None."""
    name = path.name.lower()
    for ext in sorted(_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return _EXTENSIONS[ext]
    return None


def format_from_content(path: Path) -> str | None:
    """The format the first bytes of the file show, or None when they show none we know."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(352)
    except OSError as err:
        raise ReadError(path, f"cannot open the file ({err.strerror})", "check the path") from err
    if len(head) >= 132 and head[128:132] == b"DICM":  # before TIFF: dual-format preambles
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and format_from_extension(path) == "bmp":
        return "bmp"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if _is_nifti_header(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(352)
        except (OSError, EOFError, zlib.error):
            return "gzip"
        if _is_nifti_header(inner):
            return "nifti"
        if len(inner) >= 4 and struct.unpack(">i", inner[:4])[0] == 1:
            return "mgh"
        return "gzip"
    if (
        len(head) >= 4
        and struct.unpack(">i", head[:4])[0] == 1
        and format_from_extension(path) == "mgh"
    ):
        return "mgh"
    return None


def _is_nifti_header(head: bytes) -> bool:
    if len(head) < 348:
        return False
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
            return True
        if size == 540 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
            return True
    return False


def detect_format(path: Path) -> str:
    """The file's format, checking that its content agrees with its extension."""
    by_name = format_from_extension(path)
    by_content = format_from_content(path)
    if by_content == "gzip":
        by_content = None if by_name in ("nifti", "mgh") else "gzip"
    if by_name and by_content and by_name != by_content:
        raise UnsupportedFormatError(
            path,
            f"the extension says {by_name} but the content is {by_content}",
            f"rename the file with the right extension for {by_content}",
        )
    fmt = by_content or by_name
    if fmt is None or fmt == "gzip":
        raise UnsupportedFormatError(
            path, "unknown or unsupported file format", f"supported formats: {SUPPORTED}"
        )
    if by_content is None and fmt == "dicom" and path.stat().st_size < 132:
        raise ReadError(path, "file too short to be DICOM (truncated?)")
    return fmt


def read_image(
    path: str | Path, modality: str | None = None, series_uid: str | None = None
) -> Image:
    """Read one image, volume or DICOM series folder.

    Args:
        path: a file, or a folder holding one DICOM series.
        modality: overrides the modality (NIfTI and raster files carry none), e.g. ``"CT"``.
        series_uid: the series to read from a folder that holds several.

    Raises:
        ReadError: the file is missing, corrupt, truncated, of another format than its
            extension says, or not an image (e.g. a DICOM SEG).
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "no such file or folder", "check the path")
    try:
        image = _read_any(path, series_uid)
    except (ReadError, ConfigError):
        raise
    except MemoryError as err:
        raise ReadError(path, "not enough memory to read this image") from err
    except Exception as err:  # a damaged file can fail deep inside a decoder
        raise ReadError(
            path,
            f"unreadable or corrupt file ({type(err).__name__}: {err})",
            "re-export or re-download it",
        ) from err
    if modality:
        image.modality = modality.upper()
    return image


def _read_any(path: Path, series_uid: str | None) -> Image:
    if path.is_dir():
        if not any(p.is_file() for p in path.iterdir()):
            raise ReadError(path, "the folder is empty", "point to a folder with images")
        if not any(is_dicom_file(p) for p in path.iterdir() if p.is_file()) and any(
            format_from_extension(p) in _RASTER for p in path.iterdir()
        ):
            raise ReadError(
                path,
                "this folder holds raster images, not one DICOM series",
                "read it as a dataset with read_image_folder() or `medisynth info`",
            )
        return read_dicom_series(path, series_uid)
    if not path.is_file():
        raise ReadError(path, "not a regular file (a pipe, socket or device)")
    fmt = detect_format(path)
    if fmt == "dicom":
        return read_dicom_file(path)
    if fmt in ("nifti", "mgh"):
        return read_nifti(path)
    if fmt in _RASTER:
        return read_raster(path, fmt)
    if fmt == "npy":
        return read_npy(path)
    raise UnsupportedFormatError(
        path,
        f"a {fmt} file is a collection, not one image",
        "read it with read_medmnist() or `medisynth info`",
    )


def _check_size(
    path: Path, shape: Sequence[int], itemsize: int, compressed: bool, offset: int
) -> None:
    """Refuse headers that declare more data than the file can hold."""
    elements = check_elements(path, shape)
    needed = elements * itemsize
    size = path.stat().st_size
    if compressed and needed > _MAX_DEFLATE_RATIO * size + 65536:
        raise ReadError(
            path,
            f"the header declares {needed:,} bytes of data but the compressed file has only "
            f"{size:,} bytes (corrupt header or truncated file)",
            "re-export or re-download the file",
        )
    if not compressed and offset + needed > size:
        raise ReadError(
            path,
            f"truncated: the header declares {needed:,} bytes of data from offset {offset} but "
            f"the file has {size:,} bytes",
            "re-export or re-download the file",
        )


def _gunzip_checked(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise ReadError(
            path,
            f"the gzip stream is damaged or truncated ({err})",
            "re-export or re-download the file",
        ) from err


def read_nifti(path: str | Path) -> Image:
    """Read NIfTI-1/2 (.nii, .nii.gz) or FreeSurfer MGH (.mgz) with nibabel.

    The array is ``(C, i, j, k)`` in the file's voxel order; a 4th dimension (time, echoes,
    vector components) becomes the channels. ``affine`` is nibabel's best affine (sform, else
    qform), spacing its voxel sizes.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img: Any = nib.load(path)
        shape = tuple(int(s) for s in img.shape)
        dtype = np.dtype(img.get_data_dtype())
        compressed = path.name.lower().endswith((".gz", ".mgz"))
        offset = int(getattr(img.dataobj, "offset", 0) or 0)
        _check_size(path, shape, dtype.itemsize, compressed, offset)
        if compressed:
            # nibabel stops reading once it has the voxels, so a damaged gzip trailer (CRC,
            # length) would pass unnoticed: decompress it whole, which checks both.
            img = type(img).from_bytes(_gunzip_checked(path))
        data = np.asarray(img.dataobj)
        if data.dtype.names:  # RGB24 / RGBA32 NIfTI: the colour fields become channels
            data = np.stack([data[name] for name in data.dtype.names], axis=-1)
        affine = np.asarray(img.affine, dtype=np.float64)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except ReadError:
        raise
    except MemoryError as err:
        raise ReadError(path, "not enough memory to read this volume") from err
    except Exception as err:
        raise ReadError(
            path,
            f"corrupt or truncated NIfTI/MGH file ({type(err).__name__}: {err})",
            "re-export or re-download the file",
        ) from err
    if data.ndim < 2:
        raise ReadError(path, f"a NIfTI array needs 2 or more dimensions, got shape {shape}")
    if data.ndim == 2:
        data = data[:, :, None]
    spatial = data.shape[:3]
    channels = int(np.prod(data.shape[3:], dtype=np.int64)) if data.ndim > 3 else 1
    array = np.moveaxis(data.reshape(*spatial, channels), -1, 0).astype(np.float32, copy=False)
    if not np.all(np.isfinite(affine)):
        raise ReadError(path, "the affine holds NaN or infinity", "fix the header's sform/qform")
    zooms = tuple(z if np.isfinite(z) and z > 0 else 1.0 for z in zooms)
    zooms = (*zooms, *(1.0,) * (3 - len(zooms)))
    header = img.header
    meta = {"format": "mgh" if path.name.lower().endswith((".mgz", ".mgh")) else "nifti"}
    descrip = header.get("descrip") if hasattr(header, "get") else None
    if descrip is not None:
        text = bytes(np.asarray(descrip).tobytes()).split(b"\x00")[0].decode("latin-1").strip()
        if text:
            meta["description"] = text
    if data.ndim > 3:
        meta["channels_from"] = f"dimensions 4+ of shape {shape}"
    return Image(
        array=array,
        spacing=zooms[:3],
        affine=affine,
        modality="",
        source_dtype=(dtype[0] if dtype.names else dtype).newbyteorder("=").name,
        meta=meta,
        fingerprint=sha256_file(path),
        path=str(path),
    )


def read_raster(path: str | Path, fmt: str | None = None) -> Image:
    """Read PNG, JPEG, TIFF, GIF or BMP, keeping 16-bit and float values.

    Grey images give one channel, colour images three (alpha is dropped, palettes expanded).
    Multi-page TIFF stacks give a volume ``(C, pages, H, W)``. Spacing is 1 unless the file
    records a resolution (then mm per pixel).
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    try:
        reader = _read_tiff if fmt == "tiff" else _read_pillow
        array, spacing, colour = reader(path)
    except ReadError:
        raise
    except Exception as err:
        raise ReadError(
            path,
            f"corrupt or truncated {fmt.upper()} file ({type(err).__name__}: {err})",
            "re-export the image",
        ) from err
    source_dtype = str(array.dtype)
    # colour: (..., H, W, 3|4) -> (3, ..., H, W), alpha dropped; grey: (..., H, W) -> (1, ...)
    chw = np.moveaxis(array[..., :3], -1, 0) if colour else array[None]
    if chw.ndim not in (3, 4):
        raise ReadError(path, f"unsupported image layout {array.shape}")
    if chw.ndim == 4 and len(spacing) == 2:
        spacing = (1.0, *spacing)
    return Image(
        array=chw.astype(np.float32),
        spacing=spacing,
        modality="",
        source_dtype=source_dtype,
        meta={"format": fmt},
        fingerprint=sha256_file(path),
        path=str(path),
    )


def _read_pillow(path: Path) -> tuple[np.ndarray, tuple[float, ...], bool]:
    from PIL import Image as PILImage

    with PILImage.open(path) as opened:
        bands = len(opened.getbands())
        check_elements(path, (*opened.size, bands))
        opened.load()
        mode = opened.mode
        pil: Any = opened
        if mode == "P":
            pil = opened.convert("RGBA" if "transparency" in opened.info else "RGB")
        elif mode in ("1", "LA", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            pil = opened.convert({"1": "L", "LA": "L", "PA": "RGB"}.get(mode, "RGB"))
        array = np.asarray(pil)
        dpi = opened.info.get("dpi")
    if mode == "1":
        array = (array > 0).astype(np.uint8) * 255
    if array.dtype == np.int32 and mode.startswith("I;16"):
        array = array.astype(np.uint16)
    spacing = (1.0, 1.0)
    if dpi and all(float(d) > 1 for d in dpi[:2]):
        spacing = (25.4 / float(dpi[1]), 25.4 / float(dpi[0]))
    return array, spacing, array.ndim == 3


def _read_tiff(path: Path) -> tuple[np.ndarray, tuple[float, ...], bool]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.pages or not tif.series:
            raise ReadError(path, "the TIFF file has no image pages")
        series = tif.series[0]
        page = tif.pages[0]
        _check_size(
            path, series.shape, np.dtype(series.dtype).itemsize, page.compression != 1, offset=0
        )
        axes = series.axes
        try:
            array = series.asarray()
        except ValueError as err:
            if "imagecodecs" not in str(err):
                raise
            # LZW/deflate/JPEG pages without the optional imagecodecs package: Pillow decodes them
            return _read_pillow(path)
    colour = "S" in axes and array.shape[axes.index("S")] in (3, 4)
    if colour:
        array = np.moveaxis(array, axes.index("S"), -1)
    return np.asarray(array), (1.0, 1.0), colour


def read_npy(path: str | Path) -> Image:
    """Read a .npy array: ``(H, W)``, ``(D, H, W)`` or channel-first ``(C, H, W)``/``(C, D, H, W)``
    when the first axis is at most 4 long."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
        _check_size(path, array.shape, array.dtype.itemsize, compressed=False, offset=0)
        array = np.array(array)
    except ReadError:
        raise
    except Exception as err:
        raise ReadError(path, f"corrupt .npy file ({type(err).__name__}: {err})") from err
    if array.dtype.kind not in "biuf":
        raise ReadError(path, f"unsupported array type {array.dtype}", "save a numeric array")
    if array.ndim == 2 or array.ndim == 3 and array.shape[0] > 4:
        array = array[None]
    if array.ndim not in (3, 4):
        raise ReadError(path, f"unsupported array shape {array.shape}")
    return Image(
        array=array,
        spacing=(1.0,) * (array.ndim - 1),
        source_dtype=str(array.dtype),
        meta={"format": "npy"},
        fingerprint=sha256_file(path),
        path=str(path),
    )


def read_medmnist(path: str | Path) -> LabeledArrays:
    """Read a MedMNIST-layout ``.npz`` (``{split}_images`` / ``{split}_labels`` arrays).

    Images become float32 ``(N, C, H, W)`` (2D) or ``(N, 1, D, H, W)`` (3D) with their stored
    values (0..255); labels become int64, ``(N,)`` for single-label tasks.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise ReadError(path, "no such file", "check the path") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ReadError(
            path, f"not a readable .npz archive ({err})", "re-download the file"
        ) from err
    splits = sorted(k[: -len("_images")] for k in arrays if k.endswith("_images"))
    if not splits:
        raise ReadError(
            path,
            f"no '<split>_images' arrays (found {sorted(arrays)})",
            "a MedMNIST file holds train_images, train_labels, val_images, ...",
        )
    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    source_dtype = str(arrays[f"{splits[0]}_images"].dtype)
    for split in (
        "train",
        "val",
        "test",
        *[s for s in splits if s not in ("train", "val", "test")],
    ):
        if split not in splits:
            continue
        raw = arrays[f"{split}_images"]
        if f"{split}_labels" not in arrays:
            raise ReadError(path, f"{split}_images has no matching {split}_labels")
        lab = np.asarray(arrays[f"{split}_labels"])
        if len(lab) != len(raw):
            raise ReadError(path, f"{split}: {len(raw)} images but {len(lab)} labels")
        images[split] = _medmnist_channel_first(raw, path)
        lab = lab.astype(np.int64)
        labels[split] = lab.reshape(-1) if lab.ndim == 1 or lab.shape[1] == 1 else lab
    return LabeledArrays(
        images=images,
        labels=labels,
        source_dtype=source_dtype,
        fingerprint=sha256_file(path),
        path=str(path),
    )


def _medmnist_channel_first(raw: np.ndarray, path: Path) -> np.ndarray:
    if raw.ndim == 3:  # (N, H, W) grayscale 2D
        return raw[:, None].astype(np.float32)
    if raw.ndim == 4 and raw.shape[-1] == 3:  # (N, H, W, 3) colour 2D
        return np.moveaxis(raw, -1, 1).astype(np.float32)
    if raw.ndim == 4:  # (N, D, H, W) 3D
        return raw[:, None].astype(np.float32)
    raise ReadError(path, f"unexpected MedMNIST image array shape {raw.shape}")


# --------------------------------------------------------------------------- image folders
@dataclass
class ImageFolder:
    """A folder of same-sized images with class labels, read into memory.

    Attributes:
        images: float32 ``(N, C, H, W)`` (or ``(N, C, D, H, W)``), stored values.
        labels: int64 ``(N,)``; all 0 when the folder is unlabelled.
        class_names: the name of each class index.
        files: the file each image came from.
        skipped: ``(file, reason)`` for every file left out (with ``skip_bad=True``).
        source_dtype: the stored type of the images (the widest one seen).
        fingerprint: one fingerprint over all files read.
        spacing: the pixel/voxel size (mm) all images share, ``None`` when they differ.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    source_dtype: str = "uint8"
    fingerprint: str = ""
    path: str = ""
    modality: str = ""
    spacing: tuple[float, ...] | None = None

    def class_counts(self) -> dict[str, int]:
        counts = Counter(int(v) for v in self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def as_labeled_arrays(self) -> LabeledArrays:
        """The folder as a one-split (``"train"``) MedMNIST-style collection."""
        return LabeledArrays(
            images={"train": self.images},
            labels={"train": self.labels},
            source_dtype=self.source_dtype,
            fingerprint=self.fingerprint,
            path=self.path,
            modality=self.modality,
        )


def files_with_suffixes(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """The visible files directly in ``folder`` whose names end in ``suffixes`` (any case),
    sorted by name.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.PNG", "a.nii.gz", ".hidden.png", "notes.txt"):
    ...     _ = (folder / name).write_text("")
    >>> [p.name for p in files_with_suffixes(folder, (".png", ".nii.gz"))]
    ['a.nii.gz', 'b.PNG']
    """
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(tuple(suffixes))
    )


def read_images(
    path: Path,
    suffixes: Sequence[str],
    modality: str | None = None,
    series_folder: bool = False,
) -> list[Image]:
    """The images at ``path``: one file, or a folder's files with ``suffixes`` sorted by name.

    A folder holding none of them is read as one DICOM series when ``series_folder``, else it
    is an error.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.npy", "a.npy"):
    ...     np.save(folder / name, np.zeros((1, 4, 4), np.float32))
    >>> [Path(image.path).name for image in read_images(folder, (".npy",))]
    ['a.npy', 'b.npy']
    """
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if path.is_dir():
        files = files_with_suffixes(path, suffixes)
        if files:
            return [read_image(p, modality=modality) for p in files]
        if not series_folder:
            raise ConfigError(f"{path}: no image files")
    return [read_image(path, modality=modality)]


def _is_image_file(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and format_from_extension(path) in (_RASTER | {"nifti", "mgh", "dicom", "npy"})
    )


def _labels_from_csv(root: Path, csv_path: Path) -> list[tuple[Path, str]]:
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ReadError(csv_path, f"cannot read the label CSV ({err})") from err
    if not rows:
        raise ReadError(csv_path, "the label CSV has no rows", "add a header and one row per image")
    columns = {c.strip().lower(): c for c in rows[0] if c is not None}
    file_col = next(
        (columns[c] for c in ("filename", "file", "path", "image") if c in columns), None
    )
    label_col = next((columns[c] for c in ("label", "class", "target") if c in columns), None)
    if file_col is None or label_col is None:
        raise ReadError(
            csv_path,
            f"the label CSV needs a file column and a label column, found {list(columns)}",
            "name them 'filename' and 'label'",
        )
    entries = []
    for line, row in enumerate(rows, start=2):
        name, label = (row.get(file_col) or "").strip(), (row.get(label_col) or "").strip()
        if not name or not label:
            raise ReadError(csv_path, f"line {line}: empty file name or label")
        entries.append((root / name, label))
    return entries


def _sorted_classes(names: Sequence[str]) -> list[str]:
    unique = set(names)
    if all(n.lstrip("-").isdigit() for n in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def read_image_folder(
    root: str | Path,
    labels: str | Path = "subfolders",
    skip_bad: bool = False,
    modality: str | None = None,
) -> ImageFolder:
    """Read a folder of images, labelled by class subfolders, by a CSV, or not at all.

    Args:
        root: the folder.
        labels: ``"subfolders"`` (each subfolder is a class; files directly in ``root`` when
            there are none), ``"none"``, or the path of a CSV with ``filename,label`` columns
            (file names relative to ``root``).
        skip_bad: leave out unreadable files and files whose shape differs from the most
            common one, listing them in ``.skipped``, instead of raising.
        modality: recorded on the result (e.g. ``"CR"``); default: the modality the files
            record, when they all agree (DICOM).

    >>> folder = read_image_folder(DATA / "drive" / "training" / "images")  # doctest: +SKIP
    >>> folder.images.shape                                                  # doctest: +SKIP
    (20, 3, 584, 565)
    """
    root = Path(root)
    if not root.is_dir():
        raise ReadError(root, "not a folder", "give the folder that holds the images")
    if str(labels) == "subfolders":
        subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if subfolders:
            entries = [
                (f, sub.name)
                for sub in subfolders
                for f in sorted(sub.iterdir())
                if _is_image_file(f)
            ]
        else:
            entries = [(f, "all") for f in sorted(root.iterdir()) if _is_image_file(f)]
    elif str(labels) == "none":
        entries = [(f, "all") for f in sorted(root.iterdir()) if _is_image_file(f)]
    else:
        entries = _labels_from_csv(root, Path(labels))
    if not entries:
        raise ReadError(
            root, "no image files found", f"the folder needs files in one of: {SUPPORTED}"
        )
    read: list[tuple[Path, str, Image]] = []
    skipped: list[tuple[Path, str]] = []
    for file, label in entries:
        try:
            read.append((file, label, read_image(file)))
        except ReadError as err:
            if not skip_bad:
                raise
            skipped.append((file, str(err)))
    if not read:
        raise ReadError(root, f"none of the {len(entries)} image files could be read")
    shapes = Counter(img.array.shape for _, _, img in read)
    common, _ = shapes.most_common(1)[0]
    if len(shapes) > 1:
        odd = [(f, img.array.shape) for f, _, img in read if img.array.shape != common]
        if not skip_bad:
            examples = ", ".join(f"{f.name} {s}" for f, s in odd[:3])
            raise ReadError(
                root,
                f"images have mixed shapes: {len(read) - len(odd)} are {common} but {len(odd)} "
                f"differ (e.g. {examples})",
                f"resize them to one size, or move the {len(odd)} differing ones out of the "
                f"folder (`medisynth info {root}` counts them and names the first few)",
            )
        skipped += [(f, f"shape {s} differs from the common {common}") for f, s in odd]
        read = [r for r in read if r[2].array.shape == common]
    class_names = _sorted_classes([label for _, label, _ in read])
    index = {name: i for i, name in enumerate(class_names)}
    widest = max((img.source_dtype for _, _, img in read), key=lambda d: np.dtype(d).itemsize)
    spacings = {tuple(round(float(v), 6) for v in img.spacing) for _, _, img in read}

    return ImageFolder(
        images=np.stack([img.array for _, _, img in read]),
        labels=np.array([index[label] for _, label, _ in read], dtype=np.int64),
        class_names=class_names,
        files=[f for f, _, _ in read],
        skipped=skipped,
        source_dtype=widest,
        fingerprint=combine_fingerprints(
            (str(f.relative_to(root)), img.fingerprint) for f, _, img in read
        ),
        path=str(root),
        modality=(modality or _shared_modality([img for _, _, img in read])).upper(),
        spacing=spacings.pop() if len(spacings) == 1 else None,
    )


def _shared_modality(images: Sequence[Image]) -> str:
    """The modality all images record (DICOM does), or ``""`` when they disagree or say none."""
    found = {img.modality for img in images}
    return found.pop() if len(found) == 1 else ""
