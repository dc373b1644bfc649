"""T1 -> T2 brain MRI translation on two real cases: train on one case's axial slices, translate
the other case's whole T1 volume with ``medisynth.translate``, and score it in the brain.

Cases (co-registered 240x240x155 @ 1 mm, shared/data/brainlesion_mri): BraTS-GLI-00001-000
(t1n, t2w) and TCGA-DU-7294 (t1_bet, t2_bet). "BraTS test" trains on TCGA and tests on BraTS,
"TCGA test" the reverse.

Protocol: brain mask = target > 0 or source > 0; only axial slices with >= 10% brain are
counted; each volume (prediction, target) is normalised to [0, 1] by its own 1st/99th in-mask
percentiles (clipped); the prediction is zeroed outside the source's brain (known at test time);
SSIM is scikit-image's 7x7 uniform-window SSIM (data_range 1) per slice, its map averaged over
the mask pixels of all counted slices; PSNR (data_range 1) and MAE over the same pixels.

Baselines computed in the same run: a constant prediction (the training target's mean normalised
brain intensity) and the inverted source histogram-matched to the training target. The issue's
reference figures for the inverted + histogram-matched baseline are printed beside them.

    python benchmarks/brain_translation.py --minutes 7               # pix2pix, both directions
    python benchmarks/brain_translation.py --minutes 7 --families pix2pix cyclegan
    python benchmarks/brain_translation.py --baselines-only          # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("MEDISYNTH_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
CASES = {
    "BraTS": (
        "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz",
        "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t2w.nii.gz",
    ),
    "TCGA": ("TCGA-DU-7294/TCGA-DU-7294_t1_bet.nii.gz", "TCGA-DU-7294/TCGA-DU-7294_t2_bet.nii.gz"),
}
AXIS = 2  # axial (the volumes are stored RAS-like, 240 x 240 x 155)
REFERENCE = {"BraTS": (0.457, 13.96), "TCGA": (0.689, 17.35)}  # the inverted+histmatch


def case_paths(name: str) -> tuple[Path, Path]:
    base = DATA / "brainlesion_mri"
    t1, t2 = CASES[name]
    return base / t1, base / t2


def load(path: Path) -> np.ndarray:
    from medisynth.data.io import read_image

    return read_image(path).array[0]


def normalise(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    low, high = np.percentile(volume[mask], [1, 99])
    return np.clip((volume - low) / max(high - low, 1e-6), 0.0, 1.0)


def counted_slices(mask: np.ndarray) -> list[int]:
    fractions = mask.mean(axis=(0, 1))
    return [int(z) for z in np.flatnonzero(fractions >= 0.10)]


def score(
    pred: np.ndarray, source: np.ndarray, target: np.ndarray, normalised: bool = False
) -> dict[str, float]:
    """In-brain SSIM / PSNR / MAE of a prediction against the target; the prediction is
    normalised like the target unless it is already on the normalised [0, 1] scale."""
    from skimage.metrics import structural_similarity

    mask = (target > 0) | (source > 0)
    t = normalise(target, mask)
    p = (pred if normalised else normalise(pred, mask)) * (source > 0)
    ssim_values, errors = [], []
    slices = counted_slices(mask)
    for z in slices:
        _, smap = structural_similarity(p[..., z], t[..., z], data_range=1.0, win_size=7, full=True)
        m = mask[..., z]
        ssim_values.append(smap[m])
        errors.append(p[..., z][m] - t[..., z][m])
    err = np.concatenate(errors)
    mse = float(np.mean(err**2))
    return {
        "ssim": float(np.mean(np.concatenate(ssim_values))),
        "psnr": float(10 * np.log10(1.0 / mse)),
        "mae": float(np.mean(np.abs(err))),
        "slices": len(slices),
    }


def baselines(train: str, test: str) -> dict[str, dict[str, float]]:
    from skimage.exposure import match_histograms

    tr_src, tr_tgt = (load(p) for p in case_paths(train))
    te_src, te_tgt = (load(p) for p in case_paths(test))
    tr_mask = (tr_src > 0) | (tr_tgt > 0)
    train_norm = normalise(tr_tgt, tr_mask)
    constant = np.full_like(te_src, float(train_norm[tr_mask].mean()))
    inverted = np.zeros_like(te_src)
    brain = te_src > 0
    inverted[brain] = match_histograms(1.0 - normalise(te_src, brain)[brain], train_norm[tr_mask])
    return {
        "constant (train target mean)": score(constant, te_src, te_tgt, normalised=True),
        "inverted source + histogram matching": score(inverted, te_src, te_tgt),
    }


def train_and_translate(
    family: str,
    train: str,
    test: str,
    minutes: float,
    size: int,
    out: Path,
    seed: int,
    reuse: bool = False,
) -> dict[str, float]:
    from medisynth.config import RunConfig
    from medisynth.package import load_package
    from medisynth.training.engine import Trainer
    from medisynth.translate import translate_array

    src, tgt = case_paths(train)
    model: dict[str, object] = {"family": family}
    # small networks and a higher generator learning rate: a CPU budget of minutes
    if family == "pix2pix":
        model.update(g_channels=16, g_depth=5, d_channels=16, d_layers=3, lr_g=5e-4)
    else:
        model.update(g_channels=16, n_blocks=4, d_channels=16, d_layers=3, lr_g=5e-4)
    config = RunConfig.from_dict(
        {
            "seed": seed,
            "data": {
                "format": "paired" if family == "pix2pix" else "unpaired",
                "path": str(src),
                "target_path": str(tgt),
                "axis": AXIS,
                "min_foreground": 0.1,
                "image_size": size,
            },
            "model": model,
            "train": {
                "steps": 100_000,
                "max_minutes": minutes,
                "batch_size": 4,
                "precision": "auto",  # bf16 on CPUs that have it; CycleGAN stays fp32 on CPU
                "ema_decay": 0.0,  # an average over a few hundred steps keeps early weights
                "checkpoint_every": 0,
                "sample_every": 0,
                "log_every": 25,
                "progress": False,
                "tensorboard": False,
                "out_dir": str(out / f"{family}_{train}_to_{test}"),
            },
        }
    )
    run_dir = Path(config.train.out_dir)
    if reuse and (run_dir / "model").is_dir():  # score an earlier run's model again
        summary = json.loads((run_dir / "train_summary.json").read_text())
        steps, train_s = summary["steps"], summary["wall_seconds"]
    else:
        result = Trainer(config).fit()
        steps, train_s = result.steps, result.wall_seconds
    package = load_package(run_dir / "model")
    te_src, te_tgt = (load(p) for p in case_paths(test))
    started = time.perf_counter()
    pred = translate_array(package, te_src[None], axis=AXIS)[0]
    translate_s = time.perf_counter() - started
    scores = score(pred, te_src, te_tgt)
    scores.update(steps=steps, train_s=train_s, translate_s=translate_s)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=7.0, help="training budget per run")
    parser.add_argument("--families", nargs="+", default=["pix2pix"])
    parser.add_argument("--tests", nargs="+", default=["BraTS", "TCGA"], help="test cases")
    parser.add_argument("--size", type=int, default=128, help="training slice size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/brain_translation"))
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument(
        "--reuse", action="store_true", help="score the models already in --out, no training"
    )
    args = parser.parse_args()
    rows: list[tuple[str, str, dict[str, float]]] = []
    for test in args.tests:
        train = "TCGA" if test == "BraTS" else "BraTS"
        for name, values in baselines(train, test).items():
            rows.append((test, name, values))
        if not args.baselines_only:
            for family in args.families:
                values = train_and_translate(
                    family, train, test, args.minutes, args.size, args.out, args.seed, args.reuse
                )
                label = f"{family} ({values['steps']:.0f} steps, {values['train_s'] / 60:.1f} min)"
                rows.append((test, label, values))
        ref_ssim, ref_psnr = REFERENCE[test]
        rows.append(
            (
                test,
                "issue reference: inverted + histogram matching",
                {"ssim": ref_ssim, "psnr": ref_psnr, "mae": float("nan"), "slices": 0},
            )
        )
    print(f"\nT1 -> T2, in-brain metrics (train on the other case; {args.minutes} min per run)")
    print("| test case | method | SSIM | PSNR (dB) | MAE | slices |")
    print("|---|---|---|---|---|---|")
    for test, name, v in rows:
        mae = "" if np.isnan(v["mae"]) else f"{v['mae']:.4f}"
        slices = v["slices"] or ""
        print(f"| {test} | {name} | {v['ssim']:.3f} | {v['psnr']:.2f} | {mae} | {slices} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps([{"test": t, "method": n, **v} for t, n, v in rows], indent=2)
    )


if __name__ == "__main__":
    main()
