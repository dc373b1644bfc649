"""Mask -> image synthesis on DRIVE, scored by segmentation utility on the real test split.

1. Label maps of the 20 DRIVE training images: 0 outside the field of view (FOV mask), 1 retina,
   2 vessel (first observer), written as PNG under ``--work``/labels (derived data stay outside
   the repository).
2. pix2pix trained on them (``examples/drive_mask2image.yaml``: colour images from one-hot label
   maps, random 128-pixel patches at the stored resolution, one noise map + mode-seeking loss),
   for ``--minutes`` on one thread.
3. ``--n-synthetic`` image + mask pairs generated from the training label maps with new layouts
   (random flips, quarter turns are skipped as the images are not square, an elastic warp of
   ~8 pixels): ``medisynth generate MODEL --masks LABELS --augment-masks --format npz``.
4. The segmentation U-Net of ``benchmarks/drive_segmentation.py`` (the network of ``medisynth
   validate --metrics segmentation``) trained on random patches of real pairs, synthetic pairs,
   and both, with and without classic augmentation (``medisynth.metrics.augmentation``: MONAI
   flips, affine, contrast and intensity); Dice of the vessel prediction on the 20 real test
   images against the first observer, inside the FOV. Synthetic images are scaled like real
   ones (green channel, 1st..99th percentile inside their FOV = label > 0); their vessel mask is
   label 2. When both ran, real + classic + synthetic is compared with real + classic by a
   paired bootstrap of the per-test-image Dice difference (``metrics.comparison``).

``--fraction F`` keeps a seeded subset of the 20 training images (``--subset-seed``; nested
across fractions, as ``medisynth utility-curve`` draws them): the GAN, its label maps, the
real pairs of every condition and the synthetic set (``--n-synthetic``, default two per real
image) all come from that subset alone.

Also printed: how much the noise changes an image of one mask (mean absolute difference of the
green channel inside the FOV between two noise draws) next to the difference between two real
images, and the green channel's mean/std inside the FOV, real vs synthetic.

    OMP_NUM_THREADS=1 python benchmarks/drive_mask2image.py [--data DIR] [--work DIR]
        [--minutes 10] [--fraction 1.0] [--n-synthetic N] [--seeds 0] [--epochs 12]
        [--model DIR] [--conditions real real+classic synthetic real+synthetic ...]
        [--classic default|orientations]

``--model`` skips training and uses an existing package; ``--conditions`` runs some of the
training conditions (the patches are the same whichever run, so conditions can be split over
processes); ``--classic orientations`` swaps the utility protocol's classic pipeline for flips
on both axes and quarter turns (no resampling of thin vessels) with the same intensity jitter.
The data folder is ``$MEDISYNTH_DATA/drive`` or ``../shared/data/drive`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drive_segmentation import (  # noqa: E402 - the sibling benchmark's helpers
    _summary,
    default_data,
    normalise,
    pad_to,
    random_patches,
    read_split,
)

from medisynth.data.subsets import stratified_subset  # noqa: E402
from medisynth.metrics.augmentation import ClassicAugmentation  # noqa: E402
from medisynth.metrics.comparison import gain_verdict, paired_mean_difference  # noqa: E402
from medisynth.metrics.utility import (  # noqa: E402
    SegmenterSettings,
    dice,
    predict_masks,
    train_segmenter,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "drive_mask2image.yaml"
OUTSIDE, RETINA, VESSEL = 0, 1, 2
CONDITIONS = ("real", "real+classic", "synthetic", "real+synthetic", "real+classic+synthetic")
#: classic pipelines: MONAI's defaults of the utility protocol (flip, affine with bilinear
#: resampling, intensity jitter), or only exact orientations (flips on both axes and quarter turns:
#: no resampling of 1-2 pixel vessels) with the same intensity jitter
CLASSIC = {
    "default": ClassicAugmentation(),
    "orientations": ClassicAugmentation(flip_axes=(0, 1), rotate90_prob=0.75, affine_prob=0.0),
}


def write_label_maps(data: Path, out: Path) -> Path:
    """0 outside the FOV, 1 retina, 2 vessel, one PNG per training image (sorted like them)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((data / "training" / "images").glob("*.tif")):
        case = path.name.split("_")[0]
        fov = np.asarray(Image.open(data / "training" / "mask" / f"{case}_training_mask.gif")) > 0
        vessel = np.asarray(Image.open(data / "training" / "1st_manual" / f"{case}_manual1.gif"))
        labels = np.where(vessel > 0, VESSEL, np.where(fov, RETINA, OUTSIDE)).astype(np.uint8)
        target = out / f"{case}_labels.png"
        if not target.exists():
            Image.fromarray(labels).save(target)
    return out


def training_subset(data: Path, labels: Path, indices: np.ndarray, out: Path) -> tuple[Path, Path]:
    """Folders of links to the chosen training images and their label maps (same sorted order),
    for the GAN and the generator: they see the subset only."""
    images = sorted((data / "training" / "images").glob("*.tif"))
    maps = sorted(labels.glob("*.png"))
    folders = (out / "images", out / "labels")
    for folder in folders:
        if folder.exists():
            for link in folder.iterdir():
                link.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    for i in indices:
        (folders[0] / images[i].name).symlink_to(images[i].resolve())
        (folders[1] / maps[i].name).symlink_to(maps[i].resolve())
    return folders


def scaled_synthetic(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Green channel scaled inside each image's FOV (as the real images), vessel masks."""
    green = images[:, 1] if images.shape[1] == 3 else images[:, 0]
    scaled = np.stack([normalise(g, lab > OUTSIDE) for g, lab in zip(green, labels, strict=True)])
    return scaled[:, None], labels == VESSEL


def colour_statistics(
    package: Any,
    data: Path,
    images_dir: Path,
    labels_dir: Path,
    synthetic: np.ndarray,
    syn_labels: np.ndarray,
) -> dict:
    """How much the noise changes an image of one mask (two draws) next to two different real
    photographs, and the green channel's mean / std inside the FOV, real vs synthetic."""
    from PIL import Image

    from medisynth.apply.mask2image import synthesise

    stats: dict = {}
    first = np.asarray(Image.open(sorted(labels_dir.glob("*.png"))[0]), np.int64)
    draws = [synthesise(package, first[None], torch.Generator().manual_seed(s))[0] for s in (1, 2)]
    fov = first > OUTSIDE
    rgb = [
        np.asarray(Image.open(p).convert("RGB"), np.float32)[..., 1]
        for p in sorted((data / "training" / "images").glob("*.tif"))[:2]
    ]  # two real photographs of the whole training set (the subset may hold one)
    stats["noise_effect_green_mad_fov"] = round(
        float(np.abs(draws[0][1] - draws[1][1])[fov].mean()), 2
    )
    stats["real_pair_green_mad_fov"] = round(float(np.abs(rgb[0] - rgb[1])[fov].mean()), 2)
    green_syn = synthetic[:, 1]
    inside = syn_labels > OUTSIDE
    real_green = np.stack(
        [
            np.asarray(Image.open(p).convert("RGB"), np.float32)[..., 1]
            for p in sorted(images_dir.glob("*.tif"))
        ]
    )
    real_fov = np.stack(
        [np.asarray(Image.open(p), np.int64) > OUTSIDE for p in sorted(labels_dir.glob("*.png"))]
    )
    stats["green_mean_std_fov"] = {
        "real": [
            round(float(real_green[real_fov].mean()), 1),
            round(float(real_green[real_fov].std()), 1),
        ],
        "synthetic": [
            round(float(green_syn[inside].mean()), 1),
            round(float(green_syn[inside].std()), 1),
        ],
    }
    print(json.dumps(stats), flush=True)
    return stats


def segmentation_utility(
    args: argparse.Namespace,
    chosen: np.ndarray,
    synthetic: np.ndarray,
    syn_labels: np.ndarray,
    result: dict,
) -> None:
    """The segmentation U-Net per condition on the real test split (``result["conditions"]``),
    and GAN over classic augmentation (``result["gan_over_classic"]``) when both ran."""
    train_x, train_m, _, _ = read_split(args.data, "training")
    train_x, train_m = train_x[chosen], train_m[chosen]
    test_x, test_m, test_fov, _ = read_split(args.data, "testing")
    syn_x, syn_m = scaled_synthetic(synthetic, syn_labels)
    settings = SegmenterSettings()
    n_patches = args.patches_per_image * len(train_x)
    rng = np.random.default_rng(0)
    sets = {
        "real": random_patches(train_x, train_m, n_patches, args.patch, rng),
        "synthetic": random_patches(syn_x, syn_m, n_patches, args.patch, rng),
    }
    sets["real+synthetic"] = (
        np.concatenate([sets["real"][0], sets["synthetic"][0]]),
        np.concatenate([sets["real"][1], sets["synthetic"][1]]),
    )
    sets["real+classic"], sets["real+classic+synthetic"] = sets["real"], sets["real+synthetic"]
    classic = CLASSIC[args.classic]
    height, width = test_x.shape[-2:]
    padded = pad_to(test_x, settings.size_multiple)
    result.update(
        n_synthetic=len(syn_x), epochs=args.epochs, seeds=args.seeds, n_patches=n_patches,
        threads=torch.get_num_threads(), conditions={},
    )  # fmt: skip
    per_image: dict[str, list[np.ndarray]] = {}
    for condition in args.conditions:
        x, m = sets[condition]
        augmentation = classic if "classic" in condition else None
        tick = time.perf_counter()
        scores = per_image[condition] = []
        for seed in args.seeds:
            net = train_segmenter(
                x, m, epochs=args.epochs, seed=seed, settings=settings, augmentation=augmentation
            )
            predicted = predict_masks(net, padded, batch_size=2)[:, 0, :height, :width]
            scores.append(dice(predicted & test_fov, test_m & test_fov))
        result["conditions"][condition] = {
            "n_train_patches": len(x),
            "augmentation": augmentation.describe(len(x.shape) - 2) if augmentation else None,
            "dice_fov": _summary(scores),
            "wall_s": round(time.perf_counter() - tick, 1),
        }
        print(
            f"{condition:>15}: Dice {np.mean(scores):.4f} inside the FOV "
            f"({len(args.seeds)} seed(s), {len(x)} patches)",
            flush=True,
        )
    gain, baseline = "real+classic+synthetic", "real+classic"
    if gain in per_image and baseline in per_image:  # seeds paired, test images resampled
        paired = paired_mean_difference(np.stack(per_image[gain]), np.stack(per_image[baseline]))
        verdict = gain_verdict(paired, "Dice", "GAN augmentation", "classic augmentation")
        result["gan_over_classic"] = {**paired.to_dict(), "verdict": verdict}
        print(f"fraction {args.fraction:g} ({len(chosen)} real images): {verdict}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="the drive/ folder")
    parser.add_argument("--work", type=Path, default=Path("runs/drive_mask2image_bench"))
    parser.add_argument("--model", type=Path, default=None, help="skip training: this package")
    parser.add_argument("--minutes", type=float, default=10.0, help="GAN training time")
    parser.add_argument("--steps", type=int, default=20000, help="GAN steps (at most)")
    parser.add_argument("--fraction", type=float, default=1.0, help="of the training images")
    parser.add_argument("--subset-seed", type=int, default=0)
    parser.add_argument("--n-synthetic", type=int, default=None, help="default: 2 per real")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--patches-per-image", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--conditions",
        nargs="+",
        default=list(CONDITIONS),
        choices=CONDITIONS,
        help="training conditions to run (e.g. one per process on a shared machine)",
    )
    parser.add_argument(
        "--classic", choices=sorted(CLASSIC), default="default", help="the classic pipeline"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.data / "training" / "images").is_dir():
        print(f"DRIVE not found at {args.data}: set MEDISYNTH_DATA or pass --data", file=sys.stderr)
        return 2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from medisynth.apply.mask2image import generate_pairs
    from medisynth.config import load_config
    from medisynth.data.sets import load_image_set
    from medisynth.package import load_package
    from medisynth.training.engine import Trainer

    start = time.perf_counter()
    all_labels = write_label_maps(args.data, args.work / "labels")
    n_train = len(list(all_labels.glob("*.png")))
    chosen = np.sort(
        stratified_subset(np.zeros(n_train, np.int64), args.fraction, args.subset_seed)
    )
    images_dir, labels_dir = training_subset(args.data, all_labels, chosen, args.work / "subset")
    n_synthetic = args.n_synthetic or 2 * len(chosen)
    result: dict = {"data": str(args.data), "work": str(args.work), "fraction": args.fraction,
                    "subset_seed": args.subset_seed, "subset": chosen.tolist(),
                    "classic": args.classic}  # fmt: skip
    print(f"training subset: {len(chosen)} of {n_train} images {chosen.tolist()}", flush=True)
    if args.model is None:
        overrides = [
            f"data.path={images_dir}",
            f"data.mask_path={labels_dir}",
            f"train.out_dir={args.work / 'gan'}",
            f"train.max_minutes={args.minutes}",
            f"train.steps={args.steps}",
            "train.progress=false",
            *args.overrides,
        ]
        config = load_config(EXAMPLE, overrides)
        tick = time.perf_counter()
        fit = Trainer(config).fit(overwrite=True)  # a new run replaces the earlier one
        result["gan"] = {
            "steps": fit.steps,
            "status": fit.status,
            "wall_s": round(time.perf_counter() - tick, 1),
            "patches_per_s": round(fit.images_per_second, 2),
            "model": config.model.model_dump(),
            "batch_size": config.train.batch_size,
            "patch_size": config.data.patch_size,
        }
        print(f"GAN: {fit.steps} steps in {result['gan']['wall_s']} s ({fit.status})", flush=True)
        model = Path(str(fit.package))
    else:
        model = args.model
    package = load_package(model)

    tick = time.perf_counter()
    out = args.work / "synthetic"
    generate_pairs(package, labels_dir, out, n=n_synthetic, fmt="npz", augment=True, overwrite=True)
    result["generate_wall_s"] = round(time.perf_counter() - tick, 1)
    pairs = load_image_set(str(out / "synthetic.npz"))
    assert pairs.masks is not None
    syn_labels = pairs.masks[:, 0].astype(np.int64)

    result.update(colour_statistics(package, args.data, images_dir, labels_dir, pairs.images,
                                    syn_labels))  # fmt: skip
    segmentation_utility(args, chosen, pairs.images, syn_labels, result)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
