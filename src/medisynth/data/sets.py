"""Reading the image sets that ``medisynth validate`` compares and ``medisynth study create``
draws from, and scaling them to ``[0, 1]``.

A set is named by a *spec*:

- ``file.npz:split``: one split of a MedMNIST-layout ``.npz`` (``{split}_images`` /
  ``{split}_labels``, and ``{split}_masks`` for segmentation masks when present); the split may
  be left out when the file holds only one (e.g. the ``synthetic.npz`` that ``medisynth
  generate`` writes);
- a folder of images (PNG, TIFF, DICOM ...) or of NIfTI volumes, labelled by class subfolders
  when it has any;
- a ``.npy`` array ``(N, C, H, W)`` / ``(N, C, D, H, W)`` (no labels).

A generated set that ``medisynth generate`` did not finish writing (its ``generation.json`` says
incomplete) is refused, as are files and folders inside it.

Segmentation masks (non-zero = foreground, one per image, of the images' size) come from the
``{split}_masks`` array of an npz, or from a separate set spec (``masks=``: a folder of mask
images, a ``.npy``, an npz split), which takes precedence.

Intensities: metrics work on ``[0, 1]``. :func:`intensity_window` picks one window for all sets
of a run, so they stay comparable: the stored type's full range for 8-bit data (0..255), the
``[0, 1]`` range for float data already in it, else the min..max of the *real* reference set;
values outside are clipped. ``LO,HI`` sets it by hand.

>>> import numpy as np, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "s.npz"
>>> np.savez(path, train_images=np.zeros((3, 8, 8), np.uint8), train_labels=np.zeros(3))
>>> data = load_image_set(str(path))
>>> data.images.shape, data.split, intensity_window([data])
((3, 1, 8, 8), 'train', (0.0, 255.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medisynth.errors import ConfigError, ReadError
from medisynth.output_set import OutputFolderError, check_complete, read_record


@dataclass
class ImageSet:
    """Images (stored values, float32) with optional labels, masks, and where they came from.

    ``masks``: segmentation masks ``(N, 1, ...)`` (float32, non-zero = foreground) or None.
    """

    spec: str
    images: np.ndarray
    labels: np.ndarray | None
    source_dtype: str
    fingerprint: str
    split: str = ""
    masks: np.ndarray | None = None

    @property
    def is_3d(self) -> bool:
        return self.images.ndim == 5

    def describe(self) -> dict[str, object]:
        return {
            "spec": self.spec,
            "n": int(len(self.images)),
            "shape": list(self.images.shape[1:]),
            "source_dtype": self.source_dtype,
            "labels": self.labels is not None,
            "masks": self.masks is not None,
            "fingerprint": self.fingerprint,
        }


def _split_spec(spec: str) -> tuple[Path, str]:
    """``"a/b.npz:test"`` -> (path, "test"); a ':' that is part of an existing path is kept."""
    if Path(spec).exists():
        return Path(spec), ""
    head, sep, tail = spec.rpartition(":")
    if sep and head and "/" not in tail and "\\" not in tail:
        return Path(head), tail
    return Path(spec), ""


def load_image_set(spec: str, default_split: str = "", masks: str | None = None) -> ImageSet:
    """Read a set named by ``spec`` (see the module doc), with its masks from ``masks`` if given.

    Raises:
        ReadError: missing or unreadable data, unknown split, ambiguous split, masks that do not
            match the images.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(folder / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    >>> np.save(folder / "m.npy", np.ones((2, 8, 8), np.uint8))
    >>> load_image_set(str(folder / "x.npy"), masks=str(folder / "m.npy")).masks.shape
    (2, 1, 8, 8)
    """
    data = _read_set(spec, default_split)
    if masks is not None:
        source = _read_set(masks, data.split or default_split)
        raw = source.masks if source.masks is not None else source.images  # npz: {split}_masks
        if raw.ndim == data.images.ndim and raw.shape[1] != 1:
            raise ReadError(
                masks,
                f"masks have {raw.shape[1]} channels; need one mask channel",
                "give grey or binary mask images (non-zero = foreground)",
            )
        data.masks = mask_array(raw, data.images, masks)
    return data


def mask_array(raw: np.ndarray, images: np.ndarray, where: str) -> np.ndarray:
    """Masks ``(N, ...)`` or ``(N, 1, ...)`` matching ``images`` ``(N, C, ...)`` as float32
    ``(N, 1, ...)``.

    Raises:
        ReadError: another number of masks or another spatial size than the images.

    >>> mask_array(np.ones((2, 4, 4)), np.zeros((2, 3, 4, 4)), "x").shape
    (2, 1, 4, 4)
    """
    spatial = tuple(images.shape[2:])
    if len(raw) != len(images):
        raise ReadError(
            where, f"{len(raw)} masks for {len(images)} images", "give one mask per image"
        )
    if tuple(raw.shape[1:]) not in (spatial, (1, *spatial)):
        raise ReadError(
            where,
            f"masks are {tuple(raw.shape[1:])} but the images' size is {spatial}",
            "give masks (N, ...) or (N, 1, ...) of the images' size",
        )
    if not np.issubdtype(raw.dtype, np.number) and raw.dtype != bool:
        raise ReadError(where, f"masks must be numbers, got {raw.dtype}")
    return np.asarray(raw, np.float32).reshape(len(raw), 1, *spatial)


def _read_set(spec: str, default_split: str) -> ImageSet:
    from medisynth.data.io import read_image_folder, read_medmnist

    path, split = _split_spec(spec)
    if not path.exists():
        raise ReadError(
            path, "no such file or folder", "check the path (npz splits: FILE.npz:test)"
        )
    check_complete(path)  # a generated set whose writing was interrupted is refused
    if path.is_dir():
        if split:
            raise ReadError(path, f"a folder has no splits (got ':{split}')", "drop the ':' part")
        folder = read_image_folder(path)
        labels = folder.labels if len(folder.class_names) > 1 else None
        return ImageSet(spec, folder.images, labels, folder.source_dtype, folder.fingerprint)
    if path.suffix.lower() == ".npy":
        from medisynth.data.image import sha256_file

        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ReadError(path, f"not a readable .npy array ({err})") from err
        if array.ndim == 3:  # (N, H, W) grey images
            array = array[:, None]
        if array.ndim not in (4, 5) or not np.issubdtype(array.dtype, np.number):
            raise ReadError(
                path, f"a .npy set must be (N, C, H, W) or (N, C, D, H, W), got {array.shape}"
            )
        return ImageSet(spec, array.astype(np.float32), None, str(array.dtype), sha256_file(path))
    if path.suffix.lower() != ".npz":
        raise ReadError(
            path,
            "not an image set",
            "give a MedMNIST-layout .npz (FILE.npz:split), a .npy array or a folder of images",
        )
    data = read_medmnist(path)
    if not split:
        if len(data.splits) == 1:
            split = data.splits[0]
        elif default_split in data.splits:
            split = default_split
        else:
            raise ReadError(
                path,
                f"the file holds several splits ({', '.join(data.splits)})",
                f"name one, e.g. {path}:{data.splits[-1]}",
            )
    if split not in data.images:
        raise ReadError(
            path, f"no split '{split}'", f"splits in this file: {', '.join(data.splits)}"
        )
    labels = data.labels[split]
    fingerprint = f"{data.fingerprint}:{split}"
    return ImageSet(
        spec, data.images[split], labels if labels.ndim == 1 else None, data.source_dtype,
        fingerprint, split, _npz_masks(path, split, data.images[split]),
    )  # fmt: skip


def generated_by(spec: str) -> str | None:
    """The ``model_id`` of the model that generated the set named by ``spec`` when medisynth
    wrote it (its folder, or the folder of its file, holds a generation record), else None.

    >>> import tempfile
    >>> generated_by(tempfile.mkdtemp()) is None
    True
    """
    path = _split_spec(spec)[0]
    try:
        record = read_record(path if path.is_dir() else path.parent)
    except OutputFolderError:
        return None  # someone else's generation.json
    model = None if record is None else record.get("model_id")
    return model if isinstance(model, str) else None


def _npz_masks(path: Path, split: str, images: np.ndarray) -> np.ndarray | None:
    """The ``{split}_masks`` array of an npz matched to its images, or None when absent."""
    with np.load(path, allow_pickle=False) as npz:
        if f"{split}_masks" not in npz.files:
            return None
        raw = npz[f"{split}_masks"]
    return mask_array(raw, images, f"{path} ({split}_masks)")


def intensity_window(sets: list[ImageSet], window: str = "auto") -> tuple[float, float]:
    """The ``(low, high)`` stored values mapped to ``[0, 1]``; ``sets[0]`` is the reference.

    >>> s = ImageSet("x", np.array([[[[-1000.0, 500.0]]]], np.float32), None, "int16", "")
    >>> intensity_window([s]), intensity_window([s], "0,100")
    ((-1000.0, 500.0), (0.0, 100.0))
    """
    if window != "auto":
        try:
            low, high = (float(v) for v in window.split(","))
        except ValueError:
            raise ConfigError(
                f"intensity window must be 'auto' or 'LO,HI', got {window!r}"
            ) from None
        if not high > low:
            raise ConfigError(f"intensity window {window!r}: HI must be above LO")
        return low, high
    reference = sets[0]
    if reference.source_dtype == "uint8":
        return 0.0, 255.0
    low, high = float(reference.images.min()), float(reference.images.max())
    if reference.source_dtype.startswith("float") and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    if not high > low:
        raise ConfigError(f"{reference.spec}: the real images are constant ({low}); give --range")
    return low, high


def to_unit(images: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map stored values to ``[0, 1]`` with ``window`` and clip (float32)."""
    low, high = window
    return np.clip((images.astype(np.float32) - low) / (high - low), 0.0, 1.0)
