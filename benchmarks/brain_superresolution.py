"""x2 / x4 super-resolution of brain MRI slices on two real cases: train the srgan family on one
case's axial T1 slices (examples/brain_sr_x{2,4}.yaml), enhance the other case's downsampled T1
volume with ``medisynth.apply.enhance`` and score it in the brain against the original, beside
bicubic interpolation of the same low-resolution input.

Cases (co-registered 240x240x155 @ 1 mm, shared/data/brainlesion_mri): training on TCGA-DU-7294
(t1_bet), testing on BraTS-GLI-00001-000 (t1n); ``--train BraTS`` swaps them.

Protocol: the low-resolution test volume is the high-resolution one with every in-plane
``s x s`` block of each axial slice averaged (area downsampling, as in training); bicubic is
``torch`` bicubic (``align_corners=False``) of it; the GAN output comes from
:func:`medisynth.apply.enhance.enhance_array` (2D model, slice by slice). Brain mask = HR > 0; only
axial slices with >= 10% brain are counted. Every volume is put on [0, 1] by the HR's 1st/99th
in-mask percentiles (clipped), the same for all methods. PSNR (data_range 1) over all counted mask
voxels; SSIM = :func:`medisynth.metrics.paired.ssim` (Gaussian 11-tap window, sigma 1.5, the
skimage ``gaussian_weights=True`` convention) averaged over mask pixels per slice, and SSIM-7
= scikit-image's 7x7 uniform-window SSIM map averaged over the mask pixels (the convention of
benchmarks/brain_translation.py).

    python benchmarks/brain_superresolution.py --scales 2 4 --minutes 9
    python benchmarks/brain_superresolution.py --scales 2 --baselines-only   # seconds
    python benchmarks/brain_superresolution.py --scales 2 --set model.adv_weight=0 --tag l1only
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDISYNTH_DATA", ROOT.parent / "shared/data"))
T1 = {
    "TCGA": "brainlesion_mri/TCGA-DU-7294/TCGA-DU-7294_t1_bet.nii.gz",
    "BraTS": "brainlesion_mri/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz",
}
AXIS = 2


def load(name: str) -> np.ndarray:
    from medisynth.data.io import read_image

    return read_image(DATA / T1[name]).array[0]


def low_resolution(volume: np.ndarray, scale: int) -> np.ndarray:
    """Area downsampling of each axial slice: ``(X, Y, Z) -> (X/s, Y/s, Z)``."""
    from medisynth.nets.srresnet import downsample

    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, AXIS, 0)))[:, None]
    return np.moveaxis(downsample(slices, scale)[:, 0].numpy(), 0, AXIS)


def bicubic(volume: np.ndarray, scale: int) -> np.ndarray:
    from medisynth.nets.srresnet import upsample

    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, AXIS, 0)))[:, None]
    return np.moveaxis(upsample(slices, scale)[:, 0].numpy(), 0, AXIS)


def score(pred: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    """In-brain PSNR / SSIM / SSIM-7 of ``pred`` against ``hr`` (both in source units)."""
    from skimage.metrics import structural_similarity

    from medisynth.metrics.paired import psnr, ssim

    mask = hr > 0
    low, high = np.percentile(hr[mask], [1, 99])

    def norm(v: np.ndarray) -> np.ndarray:
        return np.clip((v - low) / (high - low), 0.0, 1.0).astype(np.float32)

    keep = np.flatnonzero(mask.mean(axis=(0, 1)) >= 0.10)
    p = np.moveaxis(norm(pred), AXIS, 0)[keep][:, None]  # (S, 1, X, Y)
    t = np.moveaxis(norm(hr), AXIS, 0)[keep][:, None]
    m = np.moveaxis(mask, AXIS, 0)[keep][:, None]
    pooled_psnr = float(psnr(p[None, :, 0], t[None, :, 0], 1.0, mask=m[None, :, 0])[0])
    per_slice = ssim(p, t, 1.0, mask=m)
    weights = m.reshape(len(m), -1).sum(axis=1)
    ssim7 = []
    for k in range(len(p)):
        _, smap = structural_similarity(p[k, 0], t[k, 0], data_range=1.0, win_size=7, full=True)
        ssim7.append(smap[m[k, 0]])
    return {
        "psnr": pooled_psnr,
        "ssim": float(np.nansum(per_slice * weights) / weights[np.isfinite(per_slice)].sum()),
        "ssim7": float(np.mean(np.concatenate(ssim7))),
        "slices": len(keep),
    }


def train(
    scale: int,
    train_case: str,
    minutes: float,
    out: Path,
    reuse: bool,
    overrides: list[str],
    tag: str = "",
) -> dict:
    from medisynth.config import load_config
    from medisynth.training.engine import Trainer

    os.environ.setdefault("MEDISYNTH_DATA", str(DATA))
    run_dir = out / f"x{scale}_{train_case}{'_' + tag if tag else ''}"
    config = load_config(
        ROOT / "examples" / f"brain_sr_x{scale}.yaml",
        [
            f"data.path={DATA / T1[train_case]}",
            f"train.max_minutes={minutes}",
            f"train.out_dir={run_dir}",
            "train.progress=false",
            "train.tensorboard=false",
            "train.checkpoint_every=0",
            "train.sample_every=0",
            *overrides,
        ],
    )
    if reuse and (run_dir / "model").is_dir():
        summary = json.loads((run_dir / "train_summary.json").read_text())
        return {"steps": summary["steps"], "train_s": summary["wall_seconds"], "dir": run_dir}
    result = Trainer(config).fit(overwrite=True)  # a new run replaces the earlier one
    return {"steps": result.steps, "train_s": result.wall_seconds, "dir": run_dir}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--minutes", type=float, default=9.0, help="training budget per scale")
    parser.add_argument("--train", choices=sorted(T1), default="TCGA", help="training case")
    parser.add_argument("--out", type=Path, default=Path("runs/brain_superresolution"))
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="score models already in --out")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override (repeat)"
    )
    parser.add_argument("--tag", default="", help="suffix of the run folders and method names")
    args = parser.parse_args()
    torch.set_num_threads(1)
    test_case = "BraTS" if args.train == "TCGA" else "TCGA"
    hr = load(test_case)
    rows: list[dict] = []
    for scale in args.scales:
        lr = low_resolution(hr, scale)
        rows.append({"scale": scale, "method": "bicubic", **score(bicubic(lr, scale), hr)})
        if args.baselines_only:
            continue
        from medisynth.apply.enhance import enhance_array
        from medisynth.package import load_package

        run = train(scale, args.train, args.minutes, args.out, args.reuse, args.overrides, args.tag)
        package = load_package(run["dir"] / "model")
        started = time.perf_counter()
        sr = enhance_array(package, lr[None], axis=AXIS)[0]
        enhance_s = time.perf_counter() - started
        name = f"srgan {args.tag}".strip()
        method = f"{name} ({run['steps']} steps, {run['train_s'] / 60:.1f} min)"
        values = score(sr, hr)
        rows.append({"scale": scale, "method": method, **values, "enhance_s": enhance_s})
    print(f"\nT1 super-resolution, train {args.train}, test {test_case} (in-brain, 1 thread)")
    print("| scale | method | PSNR (dB) | SSIM | SSIM-7 | slices |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| x{r['scale']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['ssim7']:.4f} | {r['slices']} |"
        )
    for scale in args.scales:
        pair = [r for r in rows if r["scale"] == scale]
        if len(pair) == 2:
            gain = pair[1]["psnr"] - pair[0]["psnr"]
            print(
                f"x{scale}: GAN - bicubic = {gain:+.2f} dB PSNR, "
                f"{pair[1]['ssim'] - pair[0]['ssim']:+.4f} SSIM"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results{'_' + args.tag if args.tag else ''}.json").write_text(
        json.dumps(rows, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
