"""Segmentation utility on real data: the validate U-Net on DRIVE retinal vessels, Dice on test.

The MONAI U-Net of ``medisynth.metrics.utility`` (the network and loss that ``medisynth validate
--metrics segmentation`` uses) is trained on random patches of the 20 DRIVE training images
(green channel, scaled per image to its 1st..99th percentile inside the field of view) and tested
on the 20 full-size test images (padded to a multiple of 4, prediction cropped back) against the
first observer's manual vessel masks. Dice is printed over the whole image and inside the field
of view (FOV) mask, mean and std over test images and over seeds. For scale: the second
observer's masks score Dice 0.79 against the first's on these 20 test images (human
inter-observer agreement, also printed; 0.80 on image 01), and published U-Nets report F1/Dice
about 0.81-0.82 inside the FOV.

Measured (defaults, one seed, 1 CPU thread on a shared 2-core machine, 225 s wall / 157 s CPU):
Dice 0.809 inside the FOV (0.808 whole image), std over test images 0.021.

With ``--synthetic NPZ`` (image + mask pairs: ``train_images`` and ``train_masks``, the layout
``medisynth validate`` reads) the synthetic-only and real+synthetic conditions are trained too,
on as many patches from the synthetic pairs as from the real ones, and tested on the same real
test split.

    OMP_NUM_THREADS=1 python benchmarks/drive_segmentation.py [--data DIR] [--epochs 12]
        [--patch 128] [--patches-per-image 40] [--seeds 0] [--synthetic synthetic.npz]

The data folder is ``$MEDISYNTH_DATA/drive`` or ``../shared/data/drive`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medisynth.metrics.utility import (
    SegmenterSettings,
    dice,
    predict_masks,
    train_segmenter,
)


def default_data() -> Path:
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("MEDISYNTH_DATA", root)) / "drive"


def normalise(green: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
    """Scale one image to [0, 1] by its 1st..99th percentile (inside ``fov``); 0 outside."""
    inside = green[fov] if fov is not None else green.ravel()
    low, high = np.percentile(inside, (1, 99))
    out = np.clip((green - low) / max(high - low, 1e-6), 0.0, 1.0)
    return (out * fov if fov is not None else out).astype(np.float32)


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Images (N, 1, H, W) in [0, 1], manual masks and FOV masks (N, H, W) bool, case ids."""
    from PIL import Image

    tag = "training" if split == "training" else "test"
    images, masks, fovs, ids = [], [], [], []
    for path in sorted((folder / split / "images").glob("*.tif")):
        case = path.name.split("_")[0]
        rgb = np.asarray(Image.open(path).convert("RGB"), np.float32)
        fov = np.asarray(Image.open(folder / split / "mask" / f"{case}_{tag}_mask.gif")) > 0
        manual = np.asarray(Image.open(folder / split / "1st_manual" / f"{case}_manual1.gif")) > 0
        images.append(normalise(rgb[..., 1], fov)[None])
        masks.append(manual)
        fovs.append(fov)
        ids.append(case)
    if not images:
        raise SystemExit(f"no DRIVE images under {folder / split / 'images'}")
    return np.stack(images), np.stack(masks), np.stack(fovs), ids


def random_patches(
    images: np.ndarray, masks: np.ndarray, n: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random ``size`` x ``size`` patches of image + mask pairs, images picked uniformly."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise SystemExit(f"images {height}x{width} are smaller than the {size}x{size} patches")
    which = rng.integers(0, len(images), n)
    tops, lefts = rng.integers(0, height - size + 1, n), rng.integers(0, width - size + 1, n)
    corners = list(zip(which, tops, lefts, strict=True))
    x = np.stack([images[i, :, t : t + size, s : s + size] for i, t, s in corners])
    m = np.stack([masks[i, t : t + size, s : s + size] for i, t, s in corners])
    return x.astype(np.float32), m[:, None].astype(np.float32)


def pad_to(images: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad the last two axes up to a multiple of ``multiple`` (bottom/right)."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    return np.pad(images, [(0, 0)] * (images.ndim - 2) + [(0, pad_h), (0, pad_w)])


def read_synthetic(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Image + mask pairs from an npz (green channel of colour images, scaled per image)."""
    from medisynth.data.sets import load_image_set

    pairs = load_image_set(str(path))
    if pairs.masks is None:
        raise SystemExit(f"{path} holds no masks (need {pairs.split or 'train'}_masks)")
    images = pairs.images[:, 1] if pairs.images.shape[1] == 3 else pairs.images[:, 0]
    scaled = np.stack([normalise(image) for image in images])[:, None]
    return scaled, pairs.masks[:, 0] > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="the drive/ folder")
    parser.add_argument("--synthetic", type=Path, default=None, help="image + mask npz")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--patches-per-image", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--lr", type=float, default=SegmenterSettings.lr)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.data / "training" / "images").is_dir():
        print(
            f"DRIVE not found at {args.data}: set MEDISYNTH_DATA to the folder holding drive/ "
            "(training/ and testing/ with images, 1st_manual, mask), or pass --data",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.perf_counter()
    train_x, train_m, _, _ = read_split(args.data, "training")
    test_x, test_m, test_fov, test_ids = read_split(args.data, "testing")
    settings = SegmenterSettings(lr=args.lr)
    n_patches = args.patches_per_image * len(train_x)
    rng = np.random.default_rng(0)
    sets = {"real": random_patches(train_x, train_m, n_patches, args.patch, rng)}
    if args.synthetic is not None:
        syn_x, syn_m = read_synthetic(args.synthetic)
        sets["synthetic"] = random_patches(syn_x, syn_m, n_patches, args.patch, rng)
        sets["real+synthetic"] = (
            np.concatenate([sets["real"][0], sets["synthetic"][0]]),
            np.concatenate([sets["real"][1], sets["synthetic"][1]]),
        )
    second = args.data / "testing" / "2nd_manual"
    human = None
    if second.is_dir():
        from PIL import Image

        manual2 = np.stack(
            [np.asarray(Image.open(second / f"{c}_manual2.gif")) > 0 for c in test_ids]
        )
        human = float(dice(manual2 & test_fov, test_m & test_fov).mean())
    height, width = test_x.shape[-2:]
    padded = pad_to(test_x, settings.size_multiple)
    result: dict = {
        "data": str(args.data),
        "n_train_images": len(train_x),
        "n_test_images": len(test_x),
        "patch": args.patch,
        "n_patches": n_patches,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "settings": settings.describe(),
        "human_interobserver_dice_fov": human,
        "threads": torch.get_num_threads(),
        "conditions": {},
    }
    for condition, (x, m) in sets.items():
        whole, fov = [], []
        for seed in args.seeds:
            model = train_segmenter(x, m, epochs=args.epochs, seed=seed, settings=settings)
            predicted = predict_masks(model, padded, batch_size=2)[:, 0, :height, :width]
            whole.append(dice(predicted, test_m))
            fov.append(dice(predicted & test_fov, test_m & test_fov))
        result["conditions"][condition] = {
            "n_train_patches": len(x),
            "dice_whole_image": _summary(whole),
            "dice_fov": _summary(fov),
        }
        print(
            f"{condition:>15}: Dice {np.mean(fov):.4f} inside the FOV, "
            f"{np.mean(whole):.4f} whole image ({len(args.seeds)} seed(s), {len(x)} patches)",
            flush=True,
        )
    result["wall_s"] = round(time.perf_counter() - start, 1)
    if human is not None:
        print(f"{'human observer 2':>15}: Dice {human:.4f} inside the FOV (vs observer 1)")
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _summary(per_seed: list[np.ndarray]) -> dict:
    """Mean over all test images and seeds; std over test images; mean per seed."""
    values = np.stack(per_seed)
    return {
        "mean": round(float(values.mean()), 4),
        "std_over_images": round(float(values.mean(0).std()), 4),
        "per_seed": [round(float(v.mean()), 4) for v in values],
    }


if __name__ == "__main__":
    sys.exit(main())
