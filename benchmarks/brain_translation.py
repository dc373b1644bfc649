"""Cross-subject brain MRI translation, leave subjects out: T1c -> FLAIR, FLAIR -> T1c (eight
subjects) and T1 -> T2 (three), scored in the brain and in the tumour, with baselines.

Subjects (shared/data): five BraTS 2015 patients (``brats2015_flair_t1c``: T1c, FLAIR, brain
mask, manual tumour labels 0-4) and three four-contrast subjects (``brainlesion_mri``:
BraTS-GLI-00001-000, TCGA-DU-7294 with fused algorithm labels, TCGA-FG-6692; skull-stripped
int16, no brain mask: the brain is the voxels above 0 in any of the subject's contrasts).

Intensities: every scan is put on its own in-brain scale by
``medisynth.data.intensity.normalise_in_brain`` (1st..99th percentile inside the brain -> 0..1,
0 outside): the training (``data.normalisation: brain`` with the brain masks), ``translate``
(``brain_mask=``) and the scores use that one function. Targets of the four-contrast subjects are
moved by their whole-voxel z offset to the source (mutual information), as they were acquired
with thick slices.

Folds: T1c <-> FLAIR tests on a BraTS 2015 patient (manual labels), keeps the next one for model
selection (its in-brain SSIM, every ``--select-every`` steps: the best weights are the model)
and trains on the other six; T1 -> T2 trains on two subjects and tests on the third (no
selection subject: the last weights).

Scores: axial slices with >= 10% brain; scikit-image SSIM (7x7 window, data range 1) averaged
inside the brain, PSNR (data range 1) and MAE over the brain, and the same inside the tumour
labels (labels > 0) where the test subject has them.

Baselines on the same test subjects: identity (the normalised source), the source and the
inverted source each histogram-matched to the training subjects' pooled target histogram, and
the histogram prior of pix2pix (``data.source_prior: auto``: whichever of the two fits the
training pairs better).

Whole-tumour Dice (``--segment``): a MONAI U-Net (``medisynth.metrics.utility``) trained on the
real FLAIR slices and manual labels (> 0) of the fold's training BraTS 2015 patients, applied to
the test patient's real FLAIR and to each FLAIR translated from its T1c.

    python benchmarks/brain_translation.py --task t1c-flair --fold 0 --family pix2pix --minutes 6
    python benchmarks/brain_translation.py --task t1c-flair --fold 0 --baselines-only   # seconds
    python benchmarks/brain_translation.py --task t1c-flair --segment   # after runs
    python benchmarks/brain_translation.py --mask2image --fold 0 --minutes 4
    python benchmarks/brain_translation.py --task t1-t2 --ensemble _s0 _s1 _s2 --tag _ens
        # the mean of three runs' translations (medisynth translate --ensemble)
    python benchmarks/brain_translation.py --task t1c-flair --report    # the tables of all runs
    python benchmarks/brain_translation.py --task t1c-flair --figure pat0002 t1c_flair.png
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(os.environ.get("MEDISYNTH_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
BRATS15 = [f"pat000{i}" for i in range(2, 7)]
FOUR_CONTRAST = ["BraTS-GLI", "TCGA-DU", "TCGA-FG"]
_FOUR = {
    "BraTS-GLI": ("BraTS-GLI-00001-000/BraTS-GLI-00001-000-{}.nii.gz", "t1n t1c t2w t2f"),
    "TCGA-DU": ("TCGA-DU-7294/TCGA-DU-7294_{}_bet.nii.gz", "t1 t1c t2 fla"),
    "TCGA-FG": ("TCGA-FG-6692/TCGA-FG-6692_{}_bet.nii.gz", "t1 t1c t2 fla"),
}
TASKS = {"t1c-flair": ("t1c", "flair"), "flair-t1c": ("flair", "t1c"), "t1-t2": ("t1", "t2")}
AXIS = 2  # axial: the volumes are 240 x 240 x 155, LPS


def contrast_path(subject: str, contrast: str) -> Path:
    if subject in _FOUR:
        pattern, names = _FOUR[subject]
        name = dict(zip(("t1", "t1c", "t2", "flair"), names.split(), strict=True))[contrast]
        return DATA / "brainlesion_mri" / pattern.format(name)
    file = {"t1c": "T1c_subtrMeanDivStd", "flair": "Flair_subtrMeanDivStd"}[contrast]
    return DATA / "brats2015_flair_t1c" / f"brats_2013_{subject}_1" / f"{file}.nii.gz"


def brain_mask_path(subject: str) -> Path:
    """A BraTS 2015 patient's brain mask."""
    return contrast_path(subject, "t1c").parent / "brainmask.nii.gz"


def labels_path(subject: str) -> Path | None:
    """Tumour labels: manual (BraTS 2015), fused algorithm labels (TCGA-DU-7294), or none."""
    if subject in BRATS15:
        return DATA / "brats2015_flair_t1c" / f"brats_2013_{subject}_1" / "OTMultiClass.nii.gz"
    if subject == "TCGA-DU":
        return DATA / "brainlesion_mri" / "TCGA-DU-7294" / "seg_simple.nii.gz"
    return None


def folds(task: str) -> list[tuple[str, str | None, list[str]]]:
    """(test, selection or None, training subjects) of every fold of ``task``."""
    if task == "t1-t2":
        return [(s, None, [t for t in FOUR_CONTRAST if t != s]) for s in FOUR_CONTRAST]
    out = []
    for i, test in enumerate(BRATS15):
        select = BRATS15[(i + 1) % len(BRATS15)]
        out.append((test, select, [s for s in BRATS15 + FOUR_CONTRAST if s not in (test, select)]))
    return out


@functools.cache
def raw(subject: str, contrast: str) -> np.ndarray:
    """A stored scan as float32 (read-only, cached)."""
    import nibabel as nib

    array = np.asarray(nib.load(contrast_path(subject, contrast)).dataobj, dtype=np.float32)
    array.flags.writeable = False
    return array


@functools.cache
def brain(subject: str) -> np.ndarray:
    """The subject's brain: its mask (BraTS 2015), else the voxels above 0 in any contrast."""
    import nibabel as nib

    if subject in BRATS15:
        mask = np.asarray(nib.load(brain_mask_path(subject)).dataobj) > 0
    else:
        mask = np.any([raw(subject, c) > 0 for c in ("t1", "t1c", "t2", "flair")], axis=0)
    mask.flags.writeable = False
    return mask


@functools.cache
def tumour(subject: str) -> np.ndarray | None:
    import nibabel as nib

    path = labels_path(subject)
    return None if path is None else np.asarray(nib.load(path).dataobj) > 0


def z_offset(source: np.ndarray, target: np.ndarray, max_shift: int = 3) -> int:
    """The whole-voxel shift along z that best lines ``target`` up with ``source``: the largest
    mutual information (64 x 64 bins) of their intensities inside the eroded common brain.
    Co-registered contrasts acquired with thick slices can sit a voxel or two apart in z."""
    from scipy import ndimage

    common = ndimage.binary_erosion((source > 0) & (target > 0), iterations=3)

    def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
        joint, _, _ = np.histogram2d(a, b, bins=64)
        p = joint / joint.sum()
        independent = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
        nonzero = p > 0
        return float((p[nonzero] * np.log(p[nonzero] / independent[nonzero])).sum())

    scores = {
        shift: mutual_information(source[common], shifted(target, shift)[common])
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
def pair(subject: str, task: str) -> tuple[np.ndarray, np.ndarray, int]:
    """A subject's raw source and target of ``task``, the target moved by its z offset to the
    source (four-contrast subjects; the offset is returned)."""
    source_contrast, target_contrast = TASKS[task]
    source, target = raw(subject, source_contrast), raw(subject, target_contrast)
    shift = z_offset(source, target) if subject in _FOUR else 0
    if shift:
        target = shifted(target, shift)
        target.flags.writeable = False
    return source, target, shift


@functools.cache
def normalised(subject: str, task: str, side: str) -> np.ndarray:
    """The source or target of ``task`` on the in-brain scale (read-only, cached)."""
    from medisynth.data.intensity import normalise_in_brain

    source, target, _ = pair(subject, task)
    out = normalise_in_brain((source if side == "source" else target)[None], brain(subject))[0]
    out.flags.writeable = False
    return out


def prediction_file(folder: Path, method: str) -> Path:
    """Where a fold's prediction by ``method`` is saved (float16, on the in-brain scale)."""
    return folder / f"{method.replace(' ', '_')}.npy"


def write_json(path: Path, data: dict[str, Any]) -> None:
    from medisynth.files import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2))


def counted_slices(mask: np.ndarray) -> list[int]:
    return [int(z) for z in np.flatnonzero(mask.mean(axis=(0, 1)) >= 0.10)]


def score(pred: np.ndarray, subject: str, task: str) -> dict[str, float]:
    """In-brain and in-tumour SSIM / PSNR / MAE of a prediction on the in-brain scale."""
    from skimage.metrics import structural_similarity

    target, mask, lesion = normalised(subject, task, "target"), brain(subject), tumour(subject)
    pred = np.clip(pred, 0.0, 1.0) * mask
    regions = {"brain": mask} if lesion is None else {"brain": mask, "tumour": lesion & mask}
    ssim: dict[str, list[np.ndarray]] = {k: [] for k in regions}
    errors: dict[str, list[np.ndarray]] = {k: [] for k in regions}
    slices = counted_slices(mask)
    for z in slices:
        _, smap = structural_similarity(
            pred[..., z], target[..., z], data_range=1.0, win_size=7, full=True
        )
        for name, region in regions.items():
            inside = region[..., z]
            ssim[name].append(smap[inside])
            errors[name].append(pred[..., z][inside] - target[..., z][inside])
    out: dict[str, float] = {"slices": len(slices)}
    for name in regions:
        err = np.concatenate(errors[name])
        if err.size == 0:
            continue
        prefix = "" if name == "brain" else "tumour_"
        out[f"{prefix}ssim"] = float(np.mean(np.concatenate(ssim[name])))
        out[f"{prefix}psnr"] = float(10 * np.log10(1.0 / max(float(np.mean(err**2)), 1e-12)))
        out[f"{prefix}mae"] = float(np.mean(np.abs(err)))
    return out


def baselines(task: str, test: str, train: list[str]) -> dict[str, np.ndarray]:
    """The non-learned predictions of the test subject's target, on the in-brain scale."""
    from skimage.exposure import match_histograms

    from medisynth.data.histogram import HistogramPrior

    pooled = np.concatenate([normalised(s, task, "target")[brain(s)] for s in train])
    source, mask = normalised(test, task, "source"), brain(test)
    preds = {"identity": source}
    for name, values in (("source", source[mask]), ("inverted source", 1.0 - source[mask])):
        pred = np.zeros_like(source)
        pred[mask] = match_histograms(values, pooled)
        preds[f"{name} + histogram matching"] = pred
    prior = HistogramPrior.fit(
        [2 * normalised(s, task, "source")[None] - 1 for s in train],
        [2 * normalised(s, task, "target")[None] - 1 for s in train],
        [brain(s) for s in train],
        "auto",
    )
    matched = prior.apply(2 * source[None] - 1, mask)[0]
    preds[f"histogram prior ({'inverted' if prior.inverted else 'direct'})"] = (matched + 1) / 2
    return preds


def write_volume(path: Path, array: np.ndarray, like: Path) -> Path:
    """``array`` as NIfTI with the header of the file ``like`` (written once)."""
    import nibabel as nib

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        reference = nib.load(like)
        image = nib.Nifti1Image(array.astype(np.float32), reference.affine, reference.header)
        partial = path.parent / f"partial{os.getpid()}_{path.name}"
        nib.save(image, partial)
        os.replace(partial, path)
    return path


def training_folders(task: str, subjects: list[str], work: Path) -> dict[str, Path]:
    """Folders of the training subjects' source and target scans and brain masks, pairing by
    name: links to the stored scans, written files where a target moved or a mask is derived."""
    source_contrast, target_contrast = TASKS[task]
    run = work / task / "sets" / "_".join(subjects)
    for subject in subjects:
        _, target, shift = pair(subject, task)
        like = contrast_path(subject, source_contrast)
        files = {"source": like, "target": contrast_path(subject, target_contrast)}
        if shift:
            name = f"{subject}_z{shift:+d}.nii.gz"
            files["target"] = write_volume(work / task / "moved" / name, target, like)
        if subject in BRATS15:
            files["mask"] = brain_mask_path(subject)
        else:
            mask = brain(subject).astype(np.float32)
            files["mask"] = write_volume(work / task / "masks" / f"{subject}.nii.gz", mask, like)
        for side, file in files.items():
            link = run / side / f"{subject}.nii.gz"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(file.resolve())
    return {side: run / side for side in ("source", "target", "mask")}


def family_model(family: str) -> dict[str, Any]:
    """The networks for a CPU budget of minutes."""
    if family == "pix2pix":
        return {
            "family": "pix2pix",
            "g_channels": 32,
            "g_depth": 4,
            "d_channels": 32,
            "d_layers": 3,
            "lr_g": 5e-4,
            "augment": ["flip", "gamma"],
        }
    return {
        "family": family,
        "g_channels": 16,
        "n_blocks": 4,
        "d_channels": 16,
        "d_layers": 3,
        "lr_g": 5e-4,
    }


def translate_subject(package: Any, subject: str, task: str) -> np.ndarray:
    """``subject``'s source translated by a package, or by the mean of several (an ensemble)."""
    from medisynth.apply.translate import translate_ensemble

    source, _, _ = pair(subject, task)
    members = package if isinstance(package, list) else [package]
    return translate_ensemble(members, source[None], axis=AXIS, brain_mask=brain(subject))[0]


def ensemble_fold(task: str, index: int, args: argparse.Namespace) -> dict[str, Any]:
    """The mean translation of the pix2pix runs ``--ensemble TAG ...`` of a fold (each with the
    weights its run chose), scored as method ``pix2pix{--tag}``."""
    from medisynth.package import load_package

    test = folds(task)[index][0]
    folder = args.out / task / test
    results = json.loads((folder / "results.json").read_text())
    members, steps = [], []
    for tag in args.ensemble:
        info = results["methods"][f"pix2pix{tag}"]
        chosen = "model" if info["selected_step"] == info["steps"] else "selected"
        members.append(load_package(folder / f"pix2pix{tag}" / chosen))
        steps.append(info["steps"])
    pred = translate_subject(members, test, task)
    name = f"pix2pix{args.tag}"
    np.save(prediction_file(folder, name), pred.astype(np.float16))
    scored = {**score(pred, test, task), "steps": float(np.mean(steps)), "members": args.ensemble}
    results = json.loads((folder / "results.json").read_text())  # as in run_fold
    results["methods"][name] = scored
    write_json(folder / "results.json", results)
    return results


def train_and_select(
    family: str,
    task: str,
    fold: tuple[str, str | None, list[str]],
    args: argparse.Namespace,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train ``family`` on the fold's training subjects; the test subject's translation by the
    weights that scored best on the selection subject (the last ones without one)."""
    from medisynth.config import RunConfig
    from medisynth.package import load_package, save_package
    from medisynth.training.engine import Trainer

    test, select, train = fold
    folders = training_folders(task, train, args.work)
    run_dir = args.out / task / test / f"{family}{args.tag}"
    config = RunConfig.from_dict(
        {
            "seed": args.seed,
            "data": {
                "format": "paired" if family == "pix2pix" else "unpaired",
                "path": str(folders["source"]),
                "target_path": str(folders["target"]),
                "modality": "MR",
                "axis": AXIS,
                "min_foreground": 0.1,
                "image_size": args.size,
                "normalisation": "brain",
                "brain_mask_path": str(folders["mask"]),
                **({} if family == "pix2pix" else {"target_brain_mask_path": str(folders["mask"])}),
            },
            "model": family_model(family),
            "train": {
                "steps": 1_000_000,
                "max_minutes": args.minutes,
                "batch_size": 8,
                "precision": "auto",
                "ema_decay": 0.0,
                "checkpoint_every": 0,
                "sample_every": 0,
                "log_every": 50,
                "progress": False,
                "tensorboard": False,
                "out_dir": str(run_dir),
            },
        },
        args.overrides,
    )
    history: list[dict[str, float]] = []
    best = run_dir / "selected"

    def select_weights(trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if select is None or step % args.select_every:
            return
        assert trainer.family is not None
        candidate = save_package(run_dir / "candidate", trainer.family, trainer.config)
        ssim = score(translate_subject(load_package(candidate), select, task), select, task)["ssim"]
        if not history or ssim > max(h["ssim"] for h in history):
            shutil.rmtree(best, ignore_errors=True)
            os.replace(candidate, best)
        history.append({"step": step, "ssim": ssim})
        print(f"  {task} {test} {family}: step {step}, selection SSIM {ssim:.4f}", flush=True)

    started = time.perf_counter()
    result = Trainer(config, callbacks=[select_weights]).fit(overwrite=True)
    train_s = time.perf_counter() - started
    chosen, selected_step = run_dir / "model", result.steps
    if select is not None:
        final = score(translate_subject(load_package(chosen), select, task), select, task)
        earlier = max(history, key=lambda h: h["ssim"], default=None)
        history.append({"step": result.steps, "ssim": final["ssim"]})
        if earlier is not None and earlier["ssim"] >= final["ssim"]:
            chosen, selected_step = best, int(earlier["step"])
    pred = translate_subject(load_package(chosen), test, task)
    info = {
        "steps": result.steps,
        "train_minutes": round(train_s / 60, 2),
        "selected_step": selected_step,
        "selection": history,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    return pred, info


def run_fold(task: str, index: int, args: argparse.Namespace) -> dict[str, Any]:
    fold = folds(task)[index]
    test, select, train = fold
    folder = args.out / task / test
    folder.mkdir(parents=True, exist_ok=True)
    results_path = folder / "results.json"
    predictions: dict[str, np.ndarray] = baselines(
        task, test, [*train, *([select] if select else [])]
    )
    infos: dict[str, dict[str, Any]] = {}
    if not args.baselines_only:
        for family in args.families:
            pred, info = train_and_select(family, task, fold, args)
            predictions[f"{family}{args.tag}"] = pred
            infos[f"{family}{args.tag}"] = info
    scored = {}
    for name, pred in predictions.items():
        scored[name] = {**score(pred, test, task), **infos.get(name, {})}
        np.save(prediction_file(folder, name), pred.astype(np.float16))
    # read just before writing: runs of other variants on this fold may have finished meanwhile
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.update(test=test, select=select, train=train, z_offset=pair(test, task)[2])
    results.setdefault("methods", {}).update(scored)
    write_json(results_path, results)
    return results


def segment(task: str, args: argparse.Namespace) -> None:
    """Whole-tumour Dice of a U-Net trained on real FLAIR, on the test patients' real and
    translated FLAIR (the predictions saved by the runs of ``task``), 128 x 128 slices."""
    import torch

    from medisynth.metrics.utility import predict_masks

    if TASKS[task][1] != "flair":
        raise SystemExit("--segment needs a task whose target is FLAIR (t1c-flair)")
    torch.set_num_threads(args.threads)
    indices = args.fold if args.fold is not None else range(len(folds(task)))
    for test, select, _ in [folds(task)[i] for i in indices]:
        folder = args.out / task / test
        if not (folder / "results.json").exists():
            continue
        results = json.loads((folder / "results.json").read_text())
        train = [s for s in BRATS15 if s not in (test, select)]
        x, y = real_pairs(train, task)
        started = time.perf_counter()
        model = _segmenter(x, y > 1, args)
        minutes = (time.perf_counter() - started) / 60
        slices = counted_slices(brain(test))
        truth = _test_truth(test, slices)
        inputs = {"real FLAIR": normalised(test, task, "target")}
        for name in results["methods"]:
            inputs[name] = np.load(prediction_file(folder, name)).astype(np.float32)
        dice = {}
        for name, flair in inputs.items():
            x_test = _slices_128(np.clip(flair, 0, 1) * brain(test), slices, 1)[:, None]
            dice[name] = _dice(predict_masks(model, x_test * 2 - 1), truth)
        results["segmentation"] = {
            "dice": dice,
            "trained_on": train,
            "slices": len(x),
            "steps": args.seg_steps,
            "minutes": round(minutes, 2),
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
        print(f"{test}: " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()), flush=True)
        write_json(folder / "results.json", results)


def real_pairs(subjects: list[str], task: str) -> tuple[np.ndarray, np.ndarray]:
    """The subjects' real FLAIR ``(N, 1, 128, 128)`` in [0, 1] and label maps (see
    :func:`label_map`) ``(N, 1, 128, 128)`` over their counted slices."""
    images, labels = [], []
    for subject in subjects:
        slices = counted_slices(brain(subject))
        images.append(_slices_128(normalised(subject, task, "target"), slices, 1))
        labels.append(_slices_128(label_map(subject), slices, 0))
    return np.concatenate(images)[:, None], np.concatenate(labels)[:, None]


def _test_truth(test: str, slices: list[int]) -> np.ndarray:
    lesion = tumour(test)
    assert lesion is not None
    return _slices_128(lesion.astype(np.uint8), slices, 0)[:, None] > 0


def label_map(subject: str) -> np.ndarray:
    """The mask -> image input: 0 outside the brain, 1 brain, 2..5 the BraTS labels 1..4."""
    import nibabel as nib

    path = labels_path(subject)
    assert path is not None
    labels = np.asarray(nib.load(path).dataobj).astype(np.int64)
    return np.where(labels > 0, labels + 1, brain(subject).astype(np.int64))


def _slices_128(volume: np.ndarray, slices: list[int], order: int) -> np.ndarray:
    """Counted axial slices, centre 192 x 192, resized to 128 x 128: ``(N, 128, 128)``."""
    from scipy import ndimage

    stack = _crop(volume[..., slices].transpose(2, 0, 1))
    return ndimage.zoom(stack, (1, 2 / 3, 2 / 3), order=order)


def mask_to_image(args: argparse.Namespace) -> None:
    """Tumour label map + brain -> FLAIR (pix2pix, ``data.format: image_mask``) trained on each
    T1c -> FLAIR fold's training BraTS 2015 patients; a U-Net trained on their real pairs, on
    synthetic pairs (the same label maps mirrored left-right, images from the model) and on
    both, each for ``--seg-steps`` batches, scored by whole-tumour Dice on the test patient
    (128 x 128 slices)."""
    import torch

    from medisynth.apply.mask2image import synthesise
    from medisynth.config import RunConfig
    from medisynth.metrics.utility import predict_masks
    from medisynth.package import load_package
    from medisynth.training.engine import Trainer

    torch.set_num_threads(args.threads)
    task = "t1c-flair"
    indices = args.fold if args.fold is not None else range(len(folds(task)))
    for index in indices:
        test, select, _ = folds(task)[index]
        train = [s for s in BRATS15 if s not in (test, select)]
        folder = args.out / "mask2image" / test
        real_x, real_labels = real_pairs(train, task)
        for name, array in (("images", real_x), ("masks", real_labels)):
            (folder / "data" / name).mkdir(parents=True, exist_ok=True)
            for i, item in enumerate(array):
                np.save(folder / "data" / name / f"{i:05d}.npy", item.astype(np.float32))
        config = RunConfig.from_dict(
            {
                "seed": args.seed,
                "data": {
                    "format": "image_mask",
                    "path": str(folder / "data" / "images"),
                    "mask_path": str(folder / "data" / "masks"),
                    "modality": "MR",
                },
                "model": family_model("pix2pix") | {"augment": ["flip"]},
                "train": {
                    "steps": 1_000_000,
                    "max_minutes": args.minutes,
                    "batch_size": 8,
                    "ema_decay": 0.0,
                    "checkpoint_every": 0,
                    "sample_every": 0,
                    "progress": False,
                    "tensorboard": False,
                    "out_dir": str(folder / "run"),
                },
            },
            args.overrides,
        )
        summary = folder / "run" / "train_summary.json"
        if args.reuse and summary.exists():  # the model of an earlier run
            steps = json.loads(summary.read_text())["steps"]
        else:
            steps = Trainer(config).fit(overwrite=True).steps
        package = load_package(folder / "run" / "model")
        real_labels = real_labels[:, 0]
        mirrored = real_labels[:, :, ::-1].copy()
        generator = torch.Generator().manual_seed(args.seed)
        synthetic_x = synthesise(package, mirrored, generator=generator)
        synthetic_x = np.clip(synthetic_x, 0.0, 1.0) * (mirrored > 0)[:, None]
        real_y, synthetic_y = (real_labels > 1)[:, None], (mirrored > 1)[:, None]
        slices = counted_slices(brain(test))
        test_x = _slices_128(normalised(test, task, "target"), slices, 1)[:, None]
        test_y = _test_truth(test, slices)
        conditions = {
            "real": (real_x, real_y),
            "synthetic": (synthetic_x, synthetic_y),
            "real+synthetic": (
                np.concatenate([real_x, synthetic_x]),
                np.concatenate([real_y, synthetic_y]),
            ),
        }
        dice = {}
        for name, (x, y) in conditions.items():  # the same number of steps for each
            dice[name] = _dice(predict_masks(_segmenter(x, y, args), test_x * 2 - 1), test_y)
        record = {
            "test": test,
            "trained_on": train,
            "steps": steps,
            "minutes": args.minutes,
            "segmenter_steps": args.seg_steps,
            "real_slices": len(real_x),
            "dice": dice,
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
        write_json(folder / "results.json", record)
        print(f"mask -> FLAIR, {test}: " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))


def _segmenter(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> Any:
    """A U-Net trained for ``args.seg_steps`` batches of 8 on images in [0, 1] and masks
    (fewer steps left some folds' U-Nets at the all-background start: Dice 0)."""
    from medisynth.metrics.utility import SegmenterSettings, train_segmenter

    settings = SegmenterSettings(channels=(16, 32, 64, 128), strides=(2, 2, 2))
    epochs = max(1, -(-args.seg_steps * settings.batch_size // len(x)))
    return train_segmenter(
        x * 2 - 1, y.astype(np.float32), epochs=epochs, seed=args.seed, settings=settings
    )


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice over all the slices together (one volume)."""
    from medisynth.metrics.utility import dice

    return float(dice(pred[None], truth[None])[0])


def _crop(stack: np.ndarray) -> np.ndarray:
    """The central 192 x 192 of 240 x 240 slices (the brains fit; a multiple of 8)."""
    return np.ascontiguousarray(stack[..., 24:216, 24:216])


def report(task: str, args: argparse.Namespace) -> None:
    rows: dict[str, dict[str, dict[str, float]]] = {}
    dice: dict[str, dict[str, float]] = {}
    for test, _, _ in folds(task):
        path = args.out / task / test / "results.json"
        if path.exists():
            results = json.loads(path.read_text())
            for method, values in results["methods"].items():
                rows.setdefault(method, {})[test] = values
            if "segmentation" in results:
                dice[test] = results["segmentation"]["dice"]
    tests = sorted({t for per in rows.values() for t in per})
    source, target = TASKS[task]
    print(f"\n{source} -> {target}: in-brain SSIM per test subject (mean +- sd over folds)")
    print("| method | " + " | ".join(tests) + " | mean +- sd | PSNR | MAE | tumour SSIM |")
    print("|---|" + "---|" * (len(tests) + 4))
    for method, per in rows.items():
        cells = [f"{per[t]['ssim']:.3f}" if t in per else "" for t in tests]
        ssim = [per[t]["ssim"] for t in per]
        psnr = np.mean([per[t]["psnr"] for t in per])
        mae = np.mean([per[t]["mae"] for t in per])
        tumour_ssim = [per[t]["tumour_ssim"] for t in per if "tumour_ssim" in per[t]]
        tum = f"{np.mean(tumour_ssim):.3f}" if tumour_ssim else ""
        steps = [per[t]["steps"] for t in per if "steps" in per[t]]
        label = method + (f" ({np.mean(steps):.0f} steps)" if steps else "")
        print(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {np.mean(ssim):.3f} +- {np.std(ssim, ddof=1) if len(ssim) > 1 else 0:.3f}"
            + f" | {psnr:.2f} | {mae:.4f} | {tum} |"
        )
    if dice:
        names = list(next(iter(dice.values())))
        print("\nwhole-tumour Dice (U-Net trained on the real FLAIR of the training patients)")
        print("| input | " + " | ".join(dice) + " | mean | ratio to real |")
        print("|---|" + "---|" * (len(dice) + 2))
        real = np.mean([d["real FLAIR"] for d in dice.values()])
        for name in names:
            values = [d[name] for d in dice.values() if name in d]
            print(
                f"| {name} | "
                + " | ".join(f"{d[name]:.3f}" if name in d else "" for d in dice.values())
                + f" | {np.mean(values):.3f} | {np.mean(values) / real:.2f} |"
            )


def figure(task: str, args: argparse.Namespace, test: str, path: Path) -> Path:
    """source | best baseline | pix2pix | CycleGAN | target of one test subject, on the slice
    with the most tumour (else the middle counted slice), tumour outlined on the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = args.out / task / test
    results = json.loads((folder / "results.json").read_text())
    methods = results["methods"]
    learned = [m for m in methods if "steps" in methods[m]]
    baseline = max((m for m in methods if m not in learned), key=lambda m: methods[m]["ssim"])
    lesion = tumour(test)
    slices = counted_slices(brain(test))
    if lesion is not None and lesion[..., slices].any():
        z = slices[int(np.argmax(lesion[..., slices].sum(axis=(0, 1))))]
    else:
        z = slices[len(slices) // 2]
    source, target = TASKS[task]
    panels = [(f"{source} (input)", normalised(test, task, "source"))]
    for name in [baseline, *learned]:
        pred = np.load(prediction_file(folder, name)).astype(np.float32)
        panels.append((f"{name}\nSSIM {methods[name]['ssim']:.3f}", pred))
    panels.append((f"{target} (real)", normalised(test, task, "target")))
    rows, cols = np.nonzero(brain(test)[..., z])
    box = np.s_[max(rows.min() - 4, 0) : rows.max() + 5, max(cols.min() - 4, 0) : cols.max() + 5]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 3.0))
    for ax, (title, volume) in zip(axes, panels, strict=True):
        ax.imshow(np.rot90(volume[..., z][box]), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    if lesion is not None:
        axes[-1].contour(np.rot90(lesion[..., z][box]), levels=[0.5], colors="r", linewidths=0.6)
    fig.suptitle(f"{source} -> {target}, test subject {test}, axial slice {z}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="t1c-flair")
    parser.add_argument("--fold", type=int, nargs="*", help="fold indices (default: all)")
    parser.add_argument("--families", nargs="+", default=["pix2pix"])
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per model")
    parser.add_argument("--select-every", type=int, default=400, help="steps between selections")
    parser.add_argument("--size", type=int, default=128, help="training slice size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (--segment)")
    parser.add_argument(
        "--seg-steps", type=int, default=800, help="U-Net batches (--segment, --mask2image)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="--mask2image: keep the GANs already trained"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/brain_translation"))
    parser.add_argument("--work", type=Path, default=Path("runs/brain_translation/work"))
    parser.add_argument("--tag", default="", help="suffix of the method names (variants)")
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument(
        "--ensemble", nargs="+", metavar="TAG", help="score the mean of these pix2pix runs"
    )
    parser.add_argument("--segment", action="store_true", help="whole-tumour Dice of the runs")
    parser.add_argument(
        "--mask2image", action="store_true", help="mask -> FLAIR pairs for segmentation"
    )
    parser.add_argument("--report", action="store_true", help="print the tables of the runs")
    parser.add_argument(
        "--figure", nargs=2, metavar=("TEST", "PNG"), help="the figure of a test subject's runs"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override (repeat)"
    )
    args = parser.parse_args(argv)
    if args.report:
        report(args.task, args)
        return 0
    if args.figure:
        print(figure(args.task, args, args.figure[0], Path(args.figure[1])))
        return 0
    if args.segment:
        segment(args.task, args)
        return 0
    if args.mask2image:
        mask_to_image(args)
        return 0
    for index in args.fold if args.fold is not None else range(len(folds(args.task))):
        results = (ensemble_fold if args.ensemble else run_fold)(args.task, index, args)
        print(f"\n{args.task} fold {index}: test {results['test']}, select {results['select']}")
        for method, values in results["methods"].items():
            print(f"  {method}: SSIM {values['ssim']:.3f}, PSNR {values['psnr']:.2f}")
    report(args.task, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
