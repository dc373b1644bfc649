"""Does a trained multiscale model make real-looking shapes? Per class: the fraction of
foreground voxels (> 0 in model units), empty volumes, the voxel-wise spread across volumes and
the connected components of synthetic vs real volumes, plus an orthogonal-slice figure.

Exits with status 1 when the samples have collapsed (most volumes empty, or all alike: spread
below a quarter of the real one), the failure of the first AdrenalMNIST3D run's level 0.

    python benchmarks/multiscale_samples.py runs/adrenal3d_multiscale/model \
        --real $MEDISYNTH_DATA/adrenalmnist3d/adrenalmnist3d_64.npz \
        --figure docs/figures/multiscale_adrenal64.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def shape_stats(volumes: np.ndarray) -> dict[str, float]:
    """Foreground statistics of ``(N, 1, D, H, W)`` volumes in [-1, 1] (foreground: > 0)."""
    from scipy import ndimage

    fg = volumes[:, 0] > 0
    fractions = fg.reshape(len(fg), -1).mean(1)
    components, largest = [], []
    for mask in fg:
        labels, count = ndimage.label(mask)
        components.append(count)
        sizes = np.bincount(labels.ravel())[1:]
        largest.append(sizes.max() / sizes.sum() if count else 0.0)
    return {
        "volumes": len(volumes),
        "foreground_%": round(100 * float(fractions.mean()), 3),
        "foreground_sd_%": round(100 * float(fractions.std()), 3),
        "empty_%": round(100 * float((fractions == 0).mean()), 1),
        "spread": round(float(volumes.std(axis=0).mean()), 4),
        "components": round(float(np.mean(components)), 2),
        "largest_component_share": round(float(np.mean(largest)), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", help="a trained multiscale model package")
    parser.add_argument(
        "--real", required=True, help="MedMNIST-layout npz (its test split) or a folder of volumes"
    )
    parser.add_argument("-n", type=int, default=32, help="synthetic volumes per class")
    parser.add_argument("--figure", type=Path, help="PNG: 4 synthetic + 4 real per class")
    parser.add_argument("--json", type=Path, help="write the statistics here")
    args = parser.parse_args()

    from medisynth.data.io import read_image_folder, read_medmnist
    from medisynth.gans.multiscale import orthogonal_slices
    from medisynth.package import load_package
    from medisynth.training.logging import save_image_grid

    package = load_package(args.package)
    family = package.family
    family.prepare_for_sampling()
    if Path(args.real).is_dir():  # e.g. the training volumes of a model without a test split
        folder = read_image_folder(args.real, labels="none")
        stored, labels, real_name = folder.images, folder.labels, "real"
    else:
        arrays = read_medmnist(args.real)
        stored = arrays.images["test"]
        labels = arrays.labels["test"].reshape(len(stored), -1)[:, 0]
        real_name = "real test"
    real = family.data.intensity_map.forward(stored.astype(np.float32))
    classes = list(range(max(1, family.num_classes)))
    rows: dict[str, dict[str, float]] = {}
    views = []
    start = time.perf_counter()
    for c in classes:
        picked = torch.full((args.n,), c) if family.num_classes else None
        fake = family.sample(args.n, picked, generator=torch.Generator().manual_seed(c)).numpy()
        mine = real[labels == c] if family.num_classes else real
        name = package.class_names[c] if family.num_classes else "all"
        rows[f"synthetic {name}"] = shape_stats(fake)
        rows[f"{real_name} {name}"] = shape_stats(mine)
        views += [torch.from_numpy(fake[:4]), torch.from_numpy(mine[:4])]
    seconds = time.perf_counter() - start
    print(f"{'set':<24} " + " ".join(f"{k:>24}" for k in next(iter(rows.values()))))
    for name, stats in rows.items():
        print(f"{name:<24} " + " ".join(f"{v:>24}" for v in stats.values()))
    print(f"({args.n * len(classes)} synthetic volumes in {seconds:.0f} s)")
    if args.figure:
        # each row: two volumes x (axis 0, 1, 2) mid-slices; per class 2 rows synthetic, 2 real
        save_image_grid(torch.cat([orthogonal_slices(v) for v in views]), args.figure, per_row=6)
        print(f"figure: {args.figure}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    collapsed = [
        name
        for name, stats in rows.items()
        if name.startswith("synthetic")
        and (
            stats["empty_%"] > 50
            or stats["spread"] < 0.25 * rows[name.replace("synthetic", real_name)]["spread"]
        )
    ]
    if collapsed:
        print(f"COLLAPSED: {', '.join(collapsed)} (most volumes empty, or all alike)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
