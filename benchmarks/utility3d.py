"""Classification utility of synthetic 3D volumes (train on synthetic, test on real): a small 3D
ResNet (:class:`medisynth.metrics.utility.SmallResNet`, ``spatial_dims=3``) trained on real,
synthetic and real+synthetic volumes, AUC/ACC on the real test split. The volumes are
block-mean downsampled by ``--factor`` first (64^3 -> 32^3 by default; ``--factor 4``: 16^3)
and ``--width`` narrows the classifier, so that CPU training takes minutes; real and synthetic
volumes go through the same downsampling.

    python benchmarks/utility3d.py --real $MEDISYNTH_DATA/adrenalmnist3d/adrenalmnist3d_64.npz \
        --synthetic synthetic/synthetic.npz --factor 4 --width 8 --epochs 10 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def to_unit(images: np.ndarray, factor: int) -> np.ndarray:
    """uint8-range volumes ``(N, 1, D, H, W)`` -> [0, 1], block means of ``factor``^3."""
    from medisynth.gans.multiscale_tiling import downsample_array

    out = np.asarray(images, dtype=np.float32) / 255.0
    if factor > 1:
        out = np.stack([downsample_array(v, factor) for v in out])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", required=True, help="MedMNIST-layout npz (train/val/test)")
    parser.add_argument("--synthetic", required=True, help="npz from medisynth generate -f npz")
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--width", type=int, default=32, help="SmallResNet width (32: default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import functools

    from medisynth.data.io import read_medmnist
    from medisynth.metrics import utility
    from medisynth.metrics.utility import classification_utility

    if args.width != 32:  # a narrower classifier for CPU budgets (the same architecture)
        utility.SmallResNet = functools.partial(utility.SmallResNet, width=args.width)  # type: ignore[misc]

    real = read_medmnist(args.real)
    syn = read_medmnist(args.synthetic)
    split = syn.splits[0]

    def pair(arrays, name):  # type: ignore[no-untyped-def]
        labels = np.asarray(arrays.labels[name]).reshape(len(arrays.images[name]), -1)[:, 0]
        return to_unit(arrays.images[name], args.factor), labels.astype(np.int64)

    train, val, test, synthetic = (
        pair(real, "train"),
        pair(real, "val"),
        pair(real, "test"),
        pair(syn, split),
    )
    print(
        f"volumes {train[0].shape[2:]}: real train {len(train[1])} {np.bincount(train[1])}, "
        f"synthetic {len(synthetic[1])} {np.bincount(synthetic[1])}, test {len(test[1])}"
    )
    start = time.perf_counter()
    results = classification_utility(
        train, synthetic, test, val=val, seeds=tuple(args.seeds), epochs=args.epochs
    )
    seconds = time.perf_counter() - start
    print(f"{'trained on':<24} {'n':>6} {'AUC':>16} {'ACC':>16}")
    for condition, r in results.items():
        auc, acc = r["auc"], r["acc"]
        print(
            f"{condition:<24} {r['n_train']:>6} {auc['mean']:>9.3f} ± {auc['std']:.3f} "
            f"{acc['mean']:>9.3f} ± {acc['std']:.3f}"
        )
    print(f"({seconds:.0f} s; seeds {args.seeds}, {args.epochs} epochs, best-val-AUC epoch)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
