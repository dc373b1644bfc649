"""Brain MRI translation (T1 -> T2 or T2 -> FLAIR) on two real cases: train on one case's axial
slices, translate the other case's whole source volume with ``medisynth.apply.translate``, and score
it in the brain.

Cases (co-registered 240x240x155 @ 1 mm, shared/data/brainlesion_mri): BraTS-GLI-00001-000
(t1n, t2w, t2f) and TCGA-DU-7294 (t1_bet, t2_bet, fla_bet). "BraTS test" trains on TCGA and
tests on BraTS, "TCGA test" the reverse.

Protocol: brain mask = target > 0 or source > 0; only axial slices with >= 10% brain are
counted; each volume (prediction, target) is normalised to [0, 1] by its own 1st/99th in-mask
percentiles (clipped); the prediction is zeroed outside the source's brain (known at test time);
SSIM is scikit-image's 7x7 uniform-window SSIM (data_range 1) per slice, its map averaged over
the mask pixels of all counted slices; PSNR (data_range 1) and MAE over the same pixels.

Baselines computed in the same run: a constant prediction (the training target's mean normalised
brain intensity), the source and the inverted source, each histogram-matched to the training
target. The issue's reference figure for the best of these is printed beside them.

    python benchmarks/brain_translation.py --minutes 7               # pix2pix T1->T2, both tests
    python benchmarks/brain_translation.py --task t2-flair --minutes 7
    python benchmarks/brain_translation.py --minutes 7 --families pix2pix cyclegan
    python benchmarks/brain_translation.py --minutes 7 --set model.g_depth=5 --tag d5
    python benchmarks/brain_translation.py --baselines-only          # seconds
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("MEDISYNTH_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
CASES = {
    "BraTS": {
        contrast: f"BraTS-GLI-00001-000/BraTS-GLI-00001-000-{suffix}.nii.gz"
        for contrast, suffix in (("t1", "t1n"), ("t2", "t2w"), ("flair", "t2f"))
    },
    "TCGA": {
        contrast: f"TCGA-DU-7294/TCGA-DU-7294_{suffix}_bet.nii.gz"
        for contrast, suffix in (("t1", "t1"), ("t2", "t2"), ("flair", "fla"))
    },
}
TASKS = {"t1-t2": ("t1", "t2"), "t2-flair": ("t2", "flair")}
AXIS = 2  # axial (the volumes are stored RAS-like, 240 x 240 x 155)
# the best non-learned baseline per task and test case: (name, SSIM, PSNR)
REFERENCE = {
    ("t1-t2", "BraTS"): ("inverted + histogram matching", 0.457, 13.96),
    ("t1-t2", "TCGA"): ("inverted + histogram matching", 0.689, 17.35),
    ("t2-flair", "BraTS"): ("histogram matching", 0.316, 13.10),
    ("t2-flair", "TCGA"): ("inverted + histogram matching", 0.227, 11.28),
}


def case_paths(name: str, task: str) -> tuple[Path, Path]:
    base = DATA / "brainlesion_mri"
    source, target = TASKS[task]
    return base / CASES[name][source], base / CASES[name][target]


def load(path: Path) -> np.ndarray:
    from medisynth.data.io import read_image

    return read_image(path).array[0]


def z_offset(source: np.ndarray, target: np.ndarray, max_shift: int = 3) -> int:
    """The whole-voxel shift along z that best lines ``target`` up with ``source``: the largest
    mutual information (64 x 64 bins) of their intensities inside the eroded common brain.
    Co-registered contrasts acquired with thick slices can sit a voxel or two apart in z."""
    from scipy import ndimage

    brain = ndimage.binary_erosion((source > 0) & (target > 0), iterations=3)

    def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
        joint, _, _ = np.histogram2d(a, b, bins=64)
        p = joint / joint.sum()
        independent = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
        nonzero = p > 0
        return float((p[nonzero] * np.log(p[nonzero] / independent[nonzero])).sum())

    scores = {
        shift: mutual_information(source[brain], shifted(target, shift)[brain])
        for shift in range(-max_shift, max_shift + 1)
    }
    return max(scores, key=lambda k: scores[k])


def shifted(volume: np.ndarray, shift: int) -> np.ndarray:
    """``volume`` moved by ``shift`` voxels along z, zero-filled."""
    out = np.zeros_like(volume)
    if shift >= 0:
        out[..., shift:] = volume[..., : volume.shape[-1] - shift]
    else:
        out[..., :shift] = volume[..., -shift:]
    return out


@functools.cache
def pair(case: str, task: str, align: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """A case's source and target volumes; with ``align`` the target is moved by
    :func:`z_offset` (the shift is returned). Cached: the baselines, the training and the
    scoring of a run all read the same pairs (read-only)."""
    src_path, tgt_path = case_paths(case, task)
    source, target = load(src_path), load(tgt_path)
    shift = z_offset(source, target) if align else 0
    if shift:
        target = shifted(target, shift)
    source.flags.writeable = target.flags.writeable = False  # shared by the callers
    return source, target, shift


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


def baselines(train: str, test: str, task: str, align: bool) -> dict[str, dict[str, float]]:
    from skimage.exposure import match_histograms

    tr_src, tr_tgt, _ = pair(train, task, align)
    te_src, te_tgt, _ = pair(test, task, align)
    tr_mask = (tr_src > 0) | (tr_tgt > 0)
    train_norm = normalise(tr_tgt, tr_mask)
    constant = np.full_like(te_src, float(train_norm[tr_mask].mean()))
    brain = te_src > 0
    rows = {"constant (train target mean)": score(constant, te_src, te_tgt, normalised=True)}
    for name, flip in (("source", False), ("inverted source", True)):
        values = normalise(te_src, brain)[brain]
        matched = np.zeros_like(te_src)
        matched[brain] = match_histograms(1.0 - values if flip else values, train_norm[tr_mask])
        rows[f"{name} + histogram matching"] = score(matched, te_src, te_tgt)
    return rows


def write_like(path: Path, array: np.ndarray, like: Path) -> None:
    """Write ``array`` as NIfTI with the header (affine, spacing) of the file ``like``."""
    import nibabel as nib

    reference = nib.load(like)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.float32), reference.affine, reference.header), path)


def train_and_translate(
    family: str,
    task: str,
    train: str,
    test: str,
    minutes: float,
    size: int,
    out: Path,
    seed: int,
    reuse: bool = False,
    overrides: list[str] | None = None,
    tag: str = "",
    align: bool = True,
) -> dict[str, float]:
    from medisynth.apply.translate import translate_array
    from medisynth.config import RunConfig
    from medisynth.package import load_package
    from medisynth.training.engine import Trainer

    run_dir = out / f"{task}_{family}{tag}_{train}_to_{test}"
    src, tgt = case_paths(train, task)
    if align:  # train on the z-aligned target, written next to the run
        _, target, shift = pair(train, task, align)
        if shift:
            tgt = run_dir.parent / f"{train}_{task}_target_z{shift:+d}.nii.gz"
            write_like(tgt, target, src)
    model: dict[str, object] = {"family": family}
    # small networks and a higher generator learning rate: a CPU budget of minutes
    if family == "pix2pix":
        # a shallow U-Net (a local mapping) with flip + gamma generalised best to the other case
        model.update(
            g_channels=16,
            g_depth=2,
            d_channels=16,
            d_layers=3,
            lr_g=5e-4,
            augment=["flip", "gamma"],
        )
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
                "out_dir": str(run_dir),
            },
        },
        overrides,
    )
    if reuse and (run_dir / "model").is_dir():  # score an earlier run's model again
        summary = json.loads((run_dir / "train_summary.json").read_text())
        steps, train_s = summary["steps"], summary["wall_seconds"]
    else:
        result = Trainer(config).fit(overwrite=True)  # a new run replaces the earlier one
        steps, train_s = result.steps, result.wall_seconds
    package = load_package(run_dir / "model")
    te_src, te_tgt, _ = pair(test, task, align)
    started = time.perf_counter()
    pred = translate_array(package, te_src[None], axis=AXIS)[0]
    translate_s = time.perf_counter() - started
    scores = score(pred, te_src, te_tgt)
    scores.update(steps=steps, train_s=train_s, translate_s=translate_s)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="t1-t2")
    parser.add_argument("--minutes", type=float, default=7.0, help="training budget per run")
    parser.add_argument("--families", nargs="+", default=["pix2pix"])
    parser.add_argument("--tests", nargs="+", default=["BraTS", "TCGA"], help="test cases")
    parser.add_argument("--size", type=int, default=128, help="training slice size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/brain_translation"))
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override (repeat)"
    )
    parser.add_argument("--tag", default="", help="suffix of the run folders (variants)")
    parser.add_argument(
        "--no-align",
        dest="align",
        action="store_false",
        help="keep targets as stored (default: move each target by its z offset to the source)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="score the models already in --out, no training"
    )
    args = parser.parse_args()
    rows: list[tuple[str, str, dict[str, float]]] = []
    for test in args.tests:
        train = "TCGA" if test == "BraTS" else "BraTS"
        if args.align:
            for case in (train, test):
                print(f"{case} {args.task}: target z offset {pair(case, args.task, True)[2]:+d}")
        for name, values in baselines(train, test, args.task, args.align).items():
            rows.append((test, name, values))
        if not args.baselines_only:
            for family in args.families:
                values = train_and_translate(
                    family,
                    args.task,
                    train,
                    test,
                    args.minutes,
                    args.size,
                    args.out,
                    args.seed,
                    args.reuse,
                    args.overrides,
                    args.tag,
                    args.align,
                )
                label = f"{family}{args.tag} ({values['steps']:.0f} steps, "
                label += f"{values['train_s'] / 60:.1f} min)"
                rows.append((test, label, values))
        ref_name, ref_ssim, ref_psnr = REFERENCE[(args.task, test)]
        rows.append(
            (
                test,
                f"issue reference: {ref_name}",
                {"ssim": ref_ssim, "psnr": ref_psnr, "mae": float("nan"), "slices": 0},
            )
        )
    source, target = TASKS[args.task]
    print(
        f"\n{source} -> {target}, in-brain metrics (train on the other case; "
        f"{args.minutes} min per run)"
    )
    print("| test case | method | SSIM | PSNR (dB) | MAE | slices |")
    print("|---|---|---|---|---|---|")
    for test, name, v in rows:
        mae = "" if np.isnan(v["mae"]) else f"{v['mae']:.4f}"
        slices = v["slices"] or ""
        print(f"| {test} | {name} | {v['ssim']:.3f} | {v['psnr']:.2f} | {mae} | {slices} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results_{args.task}{args.tag}.json").write_text(
        json.dumps([{"test": t, "method": n, **v} for t, n, v in rows], indent=2)
    )


if __name__ == "__main__":
    main()
