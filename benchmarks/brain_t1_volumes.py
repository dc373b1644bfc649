"""Brain T1 volumes of the shared data on one 1 mm grid, for the multi-scale patch GAN.

Every skull-stripped T1-weighted volume of ``brainlesion_mri``, ``niivue_volumes`` and
``nilearn_mni152`` is reoriented to RAS, resampled to 1 mm isotropic (trilinear), centred on its
brain's bounding box and cropped/padded to ``--shape`` (160 x 192 x 160 by default: a whole adult
brain at 1 mm, and a multiple of 32 per side, so three patch levels fit). Intensities are
scaled per volume to [0, 1] between the 0.5th and 99.5th brain percentiles, background 0.

* BraTS-GLI-00001-000 T1n and T1c, TCGA-DU-7294 T1 and T1c: skull-stripped by the providers
  (TCGA's negative resampling voxels are clipped to 0);
* FreeSurfer "bert" ``brainmask.mgz``: skull-stripped T1 (``norm.mgz`` is the same brain);
* MNI152 2009 (nilearn): brain = grey + white matter probability > 0.2, holes filled (the niivue
  copy of the same template is left out as a near-duplicate);
* ``chris_t1`` is left out: it has skull and neck and no brain mask.

    python benchmarks/brain_t1_volumes.py --out runs/brain_t1_1mm
    medisynth train examples/brain_t1_multiscale.yaml
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

DATA = Path(
    os.environ.get("MEDISYNTH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

#: (output name, file under DATA, how its brain is found)
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("brats_t1n", "brainlesion_mri/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz", "nonzero"),
    ("brats_t1c", "brainlesion_mri/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1c.nii.gz", "nonzero"),
    ("tcga_t1", "brainlesion_mri/TCGA-DU-7294/TCGA-DU-7294_t1_bet.nii.gz", "positive"),
    ("tcga_t1c", "brainlesion_mri/TCGA-DU-7294/TCGA-DU-7294_t1c_bet.nii.gz", "positive"),
    ("bert_t1", "niivue_volumes/freesurfer_bert/brainmask.mgz", "nonzero"),
    ("mni152_t1", "nilearn_mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "mni_tissue"),
)


def brain_mask(volume: np.ndarray, rule: str, tissue: np.ndarray | None) -> np.ndarray:
    """The brain of one resampled volume: its nonzero / positive voxels or the tissue map."""
    from scipy import ndimage

    if rule == "mni_tissue":
        assert tissue is not None
        mask = ndimage.binary_closing(tissue > 0.2, iterations=2)
    elif rule == "positive":
        mask = volume > 0
    else:
        mask = volume != 0
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count > 1:  # keep the brain, drop stray specks of the resampling
        mask = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return mask


def to_grid(array: np.ndarray, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop/pad ``array`` to ``shape`` around the centre of ``mask``'s bounding box."""
    out = np.zeros(shape, np.float32)
    where = np.argwhere(mask)
    centre = (where.min(0) + where.max(0) + 1) // 2
    src, dst = [], []
    for c, n, size in zip(centre, array.shape, shape, strict=True):
        start = int(c) - size // 2
        lo, hi = max(start, 0), min(start + size, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def prepare(name: str, rel: str, rule: str, shape: tuple[int, ...]) -> tuple[np.ndarray, dict]:
    """One volume on the common grid, in [0, 1], and what was done to it."""
    import nibabel as nib
    from nibabel.processing import resample_from_to, resample_to_output

    img = nib.as_closest_canonical(nib.load(DATA / rel))
    one_mm = resample_to_output(img, voxel_sizes=(1.0, 1.0, 1.0), order=1)
    volume = np.asarray(one_mm.dataobj, dtype=np.float32)
    tissue = None
    if rule == "mni_tissue":
        maps = [DATA / rel.replace("_t1_", f"_{t}_") for t in ("gm", "wm")]
        tissue = sum(
            np.asarray(resample_from_to(nib.load(m), one_mm, order=1).dataobj, np.float32)
            for m in maps
        )
    mask = brain_mask(volume, rule, tissue)
    lo, hi = np.percentile(volume[mask], [0.5, 99.5])
    scaled = np.where(mask, np.clip((volume - lo) / (hi - lo), 0.0, 1.0), 0.0)
    extent = (np.ptp(np.argwhere(mask), axis=0) + 1).tolist()
    kept = to_grid(mask.astype(np.float32), mask, shape).sum()
    return to_grid(scaled.astype(np.float32), mask, shape), {
        "name": name,
        "source": rel,
        "source_shape": list(img.shape[:3]),
        "source_spacing_mm": [round(float(z), 3) for z in img.header.get_zooms()[:3]],
        "brain_extent_mm": extent,
        "brain_voxels_cut_off": int(mask.sum() - kept),
        "percentiles": [float(lo), float(hi)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the NIfTI volumes")
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 192, 160])
    args = parser.parse_args(argv)

    import nibabel as nib

    from medisynth.files import atomic_path

    missing = [rel for _, rel, _ in SOURCES if not (DATA / rel).exists()]
    if missing:
        raise SystemExit(f"missing under {DATA}: {', '.join(missing)} (set MEDISYNTH_DATA)")
    args.out.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    report = []
    for name, rel, rule in SOURCES:
        volume, info = prepare(name, rel, rule, shape)
        target = args.out / f"{name}.nii.gz"
        with atomic_path(target) as tmp:
            nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 1.0, 1.0])), str(tmp))
        report.append(info)
        print(
            f"{name:10s} {info['source_shape']} @ {info['source_spacing_mm']} mm -> "
            f"{list(shape)} @ 1 mm; brain {info['brain_extent_mm']} mm, "
            f"voxels cut off {info['brain_voxels_cut_off']}"
        )
    (args.out / "volumes.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
