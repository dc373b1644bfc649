"""Feature extractors: registry, cache, Inception preprocessing, radiomics, user networks."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.metrics import features as F
from medisynth.metrics.features import extract_features, get_extractor

RNG = np.random.default_rng(0)


def test_registry_rejects_unknown_names_listing_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        get_extractor("resnet50")
    for name in ("inception", "radiomics", "radiomics-lite", "pixels", "torchscript:PATH"):
        assert name in str(err.value)


@pytest.mark.parametrize("spec", ["torchscript", "torchscript:/no/such.pt", "onnx:", "pixels:x"])
def test_registry_rejects_bad_arguments(spec: str) -> None:
    with pytest.raises(ConfigError):
        get_extractor(spec)


def test_pixels_are_the_flattened_images() -> None:
    x = RNG.random((3, 1, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(extract_features(x, "pixels"), x.reshape(3, -1))


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ConfigError, match="shape"):
        extract_features(np.zeros((3, 4, 5)), "pixels")


def test_cache_is_used_and_keyed_by_fingerprint_and_extractor(tmp_path: Path) -> None:
    calls = []

    class Counting(F.PixelExtractor):
        def extract(self, images: np.ndarray) -> np.ndarray:
            calls.append(len(images))
            return super().extract(images)

    x = RNG.random((4, 1, 3, 3))
    first = extract_features(x, Counting(), cache_dir=tmp_path, fingerprint="set-a")
    second = extract_features(x, Counting(), cache_dir=tmp_path, fingerprint="set-a")
    np.testing.assert_array_equal(first, second)
    assert calls == [4]
    extract_features(x, Counting(), cache_dir=tmp_path, fingerprint="set-b")
    assert calls == [4, 4]
    assert len(list(tmp_path.glob("features-*.npy"))) == 2
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files left behind"


def test_triplanar_uses_the_central_slices() -> None:
    v = RNG.random((2, 1, 5, 6, 7))
    planes = F.triplanar_slices(v)
    np.testing.assert_array_equal(planes["axial"], v[:, :, 2])
    np.testing.assert_array_equal(planes["coronal"], v[:, :, :, 3])
    np.testing.assert_array_equal(planes["sagittal"], v[:, :, :, :, 3])


def test_radiomics_lite_matches_numpy_and_skimage_directly() -> None:
    from scipy.stats import kurtosis, skew
    from skimage.feature import graycomatrix, graycoprops

    x = RNG.random((2, 1, 16, 16))
    ex = get_extractor("radiomics-lite")
    f = dict(zip(ex.feature_names, extract_features(x, ex)[1], strict=True))
    img = x[1, 0]
    assert f["firstorder_mean"] == pytest.approx(img.mean())
    assert f["firstorder_std"] == pytest.approx(img.std())
    assert f["firstorder_skewness"] == pytest.approx(skew(img.ravel()))
    assert f["firstorder_kurtosis"] == pytest.approx(kurtosis(img.ravel(), fisher=False))
    q = np.minimum((img * 32).astype(np.uint8), 31)
    glcm = graycomatrix(q, [2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], 32, True, True)
    assert f["glcm_contrast_d2"] == pytest.approx(graycoprops(glcm, "contrast").mean())
    assert f["glcm_correlation_d2"] == pytest.approx(graycoprops(glcm, "correlation").mean())


def test_radiomics_lite_reads_volumes() -> None:
    out = extract_features(RNG.random((2, 1, 4, 8, 8)), "radiomics-lite")
    assert out.shape == (2, len(F.RadiomicsLiteExtractor().feature_names))
    assert np.isfinite(out).all()


needs_pyradiomics = pytest.mark.skipif(
    importlib.util.find_spec("radiomics") is None, reason="pyradiomics is not installed"
)


@needs_pyradiomics
@pytest.mark.parametrize("shape", [(2, 1, 12, 12), (2, 1, 6, 8, 8)])
def test_pyradiomics_first_order_matches_numpy(shape: tuple[int, ...]) -> None:
    x = RNG.random(shape)
    ex = get_extractor("radiomics")
    out = extract_features(x, ex)
    names = ex.feature_names  # type: ignore[attr-defined]
    assert out.shape == (2, len(names)) and len(names) > 50
    mean = out[:, names.index("c0_firstorder_Mean")]
    np.testing.assert_allclose(mean, x.reshape(2, -1).mean(1) * 255, rtol=1e-6)
    maximum = out[:, names.index("c0_firstorder_Maximum")]
    np.testing.assert_allclose(maximum, x.reshape(2, -1).max(1) * 255, rtol=1e-6)


@needs_pyradiomics
def test_pyradiomics_filtered_images_add_log_and_wavelet_features() -> None:
    x = RNG.random((2, 1, 16, 16))
    original, filtered = get_extractor("radiomics"), get_extractor("radiomics:filtered")
    a, b = extract_features(x, original), extract_features(x, filtered)
    names_a, names_b = original.feature_names, filtered.feature_names  # type: ignore[attr-defined]
    assert original.id != filtered.id
    assert any("log-sigma-2-0" in n for n in names_b) and any("wavelet-" in n for n in names_b)
    assert len(names_b) >= 5 * len(names_a)
    # the original-image part is the same features as the plain extractor's
    np.testing.assert_allclose(b[:, [names_b.index(n) for n in names_a]], a, rtol=1e-9)
    with pytest.raises(ConfigError, match="original"):
        get_extractor("radiomics:smoothed")


def test_torchscript_extractor_runs_the_users_network(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    path = tmp_path / "net.pt"
    torch.jit.script(net).save(str(path))
    x = RNG.random((5, 1, 8, 8)).astype(np.float32)
    out = extract_features(x, f"torchscript:{path}")
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).reshape(5, -1).double().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_torchscript_extractor_refuses_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="TorchScript"):
        get_extractor(f"torchscript:{path}")


def test_onnx_extractor(tmp_path: Path) -> None:
    if importlib.util.find_spec("onnxruntime") is None:
        path = tmp_path / "net.onnx"
        path.write_bytes(b"x")
        with pytest.raises(ConfigError, match="onnxruntime"):
            get_extractor(f"onnx:{path}")
        pytest.skip("onnxruntime is not installed (optional); checked the error message only")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.zeros(1, 1, 4, 4), str(path), dynamic_axes={"input": {0: "n"}},
                      input_names=["input"])  # fmt: skip
    x = RNG.random((3, 1, 4, 4)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(extract_features(x, f"onnx:{path}"), expected, rtol=1e-5)


# --------------------------------------------------------------------------- Inception
def _inception_or_skip(precision: str = "fp32") -> F.InceptionExtractor:
    try:
        return F.InceptionExtractor(precision)
    except ConfigError as err:
        pytest.skip(f"FID Inception not installed: {err}")


def test_inception_file_is_the_published_one() -> None:
    extractor = _inception_or_skip()
    digest = hashlib.sha1(extractor.path.read_bytes()).hexdigest()  # noqa: S324 - file identity
    assert digest == F.INCEPTION_SHA1


def test_inception_preprocessing_grey_resize_and_range() -> None:
    extractor = _inception_or_skip()
    x = RNG.random((1, 1, 28, 28)).astype(np.float32)
    grey = extract_features(x, extractor)
    assert grey.shape == (1, 2048)
    # the same as the network on the 3-channel, bilinearly resized, [-1, 0.992]-mapped image
    t = torch.nn.functional.interpolate(
        torch.from_numpy(np.repeat(x, 3, axis=1)), size=(299, 299), mode="bilinear",
        align_corners=False,
    )  # fmt: skip
    with torch.no_grad():
        direct = extractor.model(t * 255.0 / 128.0 - 1.0).double().numpy()
    np.testing.assert_allclose(grey, direct, rtol=1e-4, atol=1e-5)


def test_inception_bf16_features_close_to_fp32_and_cached_apart() -> None:
    fp32, bf16 = _inception_or_skip("fp32"), _inception_or_skip("bf16")
    x = RNG.random((3, 1, 28, 28)).astype(np.float32)
    a, b = extract_features(x, fp32), extract_features(x, bf16)
    assert not np.array_equal(a, b)  # bf16 really ran
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.05
    assert fp32.id != bf16.id  # the feature cache keeps them apart
    assert get_extractor("inception:fp32").precision == "fp32"
    with pytest.raises(ConfigError, match="precision"):
        get_extractor("inception:fp8")


def test_volumes_go_triplanar_through_2d_extractors() -> None:
    class Planar(F.PixelExtractor):
        native_3d = False

    v = RNG.random((2, 1, 4, 5, 6)).astype(np.float32)
    out = extract_features(v, Planar())
    planes = F.triplanar_slices(v)
    expected = np.concatenate([p.reshape(2, -1) for p in planes.values()], axis=1)
    np.testing.assert_array_equal(out, expected)


def test_inception_refuses_two_channels() -> None:
    extractor = _inception_or_skip()
    with pytest.raises(ConfigError, match="channels"):
        extract_features(np.zeros((1, 2, 8, 8), np.float32), extractor)
