"""What the demo's pixel precision / coverage ask of a generator: the real slices, perturbed.

The demo's report scores its synthetic MNI152 slices by precision, recall, density and coverage
on pixels (k = 5) against the training slices. Those slices come from one registered template:
neighbouring slices differ by little, so every real k-NN ball is small. This script scores
*perturbed copies of the real slices* the same way, to show how close to the slice manifold a
generator must come for a given score:

- ``midpoints``: the mean of each pair of neighbouring slices of one view (a generator that
  moves along the slice manifold perfectly, between the training slices);
- ``blur s``: every slice blurred with a Gaussian of ``s`` pixels;
- ``noise s``: Gaussian noise of standard deviation ``s`` (intensities in [0, 1]), clipped;
- ``shift d``: every slice moved ``d`` pixels left (the template is registered: real slices
  never move).

With ``--package`` a trained demo model's samples are scored too.

    python benchmarks/demo_pixel_prdc.py [--size 64] [--package demo-output/run/model]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from scipy.ndimage import gaussian_filter

from medisynth.data.mni152 import mni152_views
from medisynth.metrics.prdc import prdc

SCORES = ("precision", "recall", "density", "coverage")


def perturbations(images: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The perturbed copies of ``images`` ``(N, 1, H, W)`` in [0, 1] described above."""
    rng = np.random.default_rng(seed)
    same_view = np.flatnonzero(labels[:-1] == labels[1:])
    out = {"midpoints": 0.5 * (images[same_view] + images[same_view + 1])}
    for sigma in (0.5, 1.0, 1.5):
        out[f"blur {sigma}"] = gaussian_filter(images, (0, 0, sigma, sigma))
    for sigma in (0.02, 0.05, 0.1):
        out[f"noise {sigma}"] = np.clip(images + rng.normal(0, sigma, images.shape), 0, 1)
    for shift in (1, 2):
        out[f"shift {shift}"] = np.roll(images, -shift, axis=-1)
    return out


def package_samples(path: str, labels: np.ndarray, seed: int) -> np.ndarray:
    """As many samples of a trained package as real slices, in the real class balance, [0, 1]."""
    from medisynth.package import load_package

    package = load_package(path)
    fake = package.sample(len(labels), labels=labels.tolist(), seed=seed)
    return ((fake.numpy() + 1) / 2).clip(0, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="slice size (the demo's: 64)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--package", default=None, help="a trained demo model package")
    args = parser.parse_args(argv)
    views = mni152_views(args.size)
    images = views.images.astype(np.float64)
    images = (images - images.min()) / max(float(images.max() - images.min()), 1e-12)
    candidates = perturbations(images, views.labels, args.seed)
    if args.package:
        candidates["package samples"] = package_samples(args.package, views.labels, args.seed)
    flat = images.reshape(len(images), -1)
    print(f"{len(images)} real slices at {args.size} px, pixels in [0, 1], k = {args.k}")
    print(f"{'candidate':<16}" + "".join(f"{name:>11}" for name in SCORES))
    results = {}
    for name, candidate in candidates.items():
        scores = prdc(flat, candidate.reshape(len(candidate), -1), k=args.k)
        results[name] = {key: round(float(scores[key]), 3) for key in SCORES}
        print(f"{name:<16}" + "".join(f"{results[name][key]:>11.3f}" for key in SCORES))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
