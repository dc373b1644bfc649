"""The offline demo: a class-conditional GAN on real brain anatomy, no user data, no downloads.

Data: axial, coronal and sagittal slices of the MNI152 (ICBM 2009a) T1 template that ships
inside the nilearn wheel; the view is the class. Slices are padded to a square field of view
and resampled to 64 x 64. The demo trains the default class-conditional DCGAN for a few minutes,
generates a labelled synthetic set in equal class balance, and writes per-class sample grids and
a summary (JSON + Markdown). The slices come from :mod:`medisynth.data.mni152`
(``data.format: mni152_views``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medisynth.apply.generate import generate
from medisynth.config import RunConfig
from medisynth.data.sets import ImageSet
from medisynth.errors import ConfigError
from medisynth.files import atomic_write_text
from medisynth.package import load_package
from medisynth.training.engine import Trainer
from medisynth.training.logging import save_image_grid
from medisynth.validate.protocol import ValidateOptions, run_validation
from medisynth.validate.report import write_html

log = logging.getLogger(__name__)


def median_nn_distance(images: np.ndarray | torch.Tensor, chunk: int = 1024) -> float:
    """Median over images of the L2 distance to the nearest *other* image (pixels in [0, 1]).

    A collapsed generator has a median near 0; real data sets the scale.

    >>> median_nn_distance(np.zeros((3, 1, 2, 2)))
    0.0
    """
    flat = torch.as_tensor(np.asarray(images), dtype=torch.float32).flatten(1)
    nearest = []
    for start in range(0, len(flat), chunk):
        d = torch.cdist(flat[start : start + chunk], flat)
        rows = torch.arange(d.shape[0])
        d[rows, rows + start] = float("inf")
        nearest.append(d.min(dim=1).values)
    return float(torch.cat(nearest).median())


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-output",
    minutes: float = 6.0,
    steps: int = 4000,
    image_size: int = 64,
    per_class: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, generate and summarise (the API behind ``medisynth demo``).

    Args:
        out_dir: the output folder (created; an existing demo output is updated in place).
        minutes: training time budget; training stops at ``steps`` or after this long.
        steps: maximum number of training steps.
        image_size: slice size in pixels.
        per_class: synthetic images generated per view.
        seed: the seed of everything.
        progress: show progress bars.

    Returns the summary that is also written to ``summary.json``.
    """

    out = Path(out_dir)
    config = _demo_config(out, minutes, steps, image_size, seed, progress)
    trainer = Trainer(config)
    result = trainer.fit(overwrite=True)  # the demo's own run folder, updated in place
    if result.package is None:
        raise ConfigError("training was interrupted; run the demo again to finish it")
    package = load_package(result.package)
    n_classes = len(package.class_names)
    generated = generate(
        package,
        n=per_class * n_classes,
        out=out / "synthetic",
        fmt="png",
        class_balance=",".join(["1"] * n_classes),
        seed=seed,
        overwrite=True,
    )
    # per-class grids, synthetic and real side by side
    real = trainer.data_info
    items = [trainer.dataset[i] for i in range(len(trainer.dataset))]  # type: ignore[arg-type]
    real_images = torch.stack([item["image"] for item in items])
    real_labels = torch.stack([item["label"] for item in items])
    grids: dict[str, dict[str, str]] = {}
    diversity: dict[str, float] = {}
    synthetic_all = []
    for label, name in enumerate(package.class_names):
        fake = package.sample(per_class, labels=[label] * per_class, seed=seed + label)
        synthetic_all.append(fake)
        real_class = real_images[real_labels == label]
        synthetic_path = out / f"grid_synthetic_{name}.png"
        real_path = out / f"grid_real_{name}.png"
        save_image_grid(fake[:64], synthetic_path, per_row=8)
        save_image_grid(real_class[:64], real_path, per_row=8)
        grids[name] = {"synthetic": str(synthetic_path), "real": str(real_path)}
    fake_all = torch.cat(synthetic_all)
    diversity["synthetic_median_nn_l2"] = round(median_nn_distance((fake_all + 1) / 2), 4)
    diversity["real_median_nn_l2"] = round(median_nn_distance((real_images + 1) / 2), 4)
    validation = _validate(
        out / "validation",
        package.to_source_units(real_images),
        real_labels.numpy(),
        package.to_source_units(fake_all),
        np.repeat(np.arange(len(package.class_names)), per_class),
        real.fingerprint,
    )
    summary = {
        "data": {
            "source": real.source,
            "fingerprint": real.fingerprint,
            "classes": real.class_names,
            "class_counts": {real.class_names[k]: v for k, v in real.class_counts.items()},
            "image_size": image_size,
        },
        "training": result.to_dict(),
        "model_package": result.package,
        "synthetic": {
            "folder": generated.out_dir,
            "format": "png",
            "count": generated.count,
            "class_counts": generated.class_counts,
        },
        "grids": grids,
        "diversity": diversity,
        "validation": validation,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", _summary_markdown(summary))
    log.info("demo finished: %s", out / "summary.md")
    return summary


def _demo_config(
    out: Path, minutes: float, steps: int, image_size: int, seed: int, progress: bool
) -> RunConfig:
    """The demo's run config, after checking the budget and that ``out`` is free or a demo
    output folder."""
    if not minutes > 0 or steps < 1:
        raise ConfigError(f"the demo needs --minutes > 0 and --steps >= 1, got {minutes}, {steps}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise ConfigError(f"{out} exists and is not a demo output folder; choose another --out")
    return RunConfig.from_dict(
        {
            "seed": seed,
            "data": {"format": "mni152_views", "image_size": image_size},
            "model": {"family": "dcgan", "g_channels": 32, "d_channels": 32, "latent_dim": 128},
            "train": {
                "steps": steps,
                "batch_size": 32,
                "max_minutes": minutes,
                "checkpoint_every": 500,
                "sample_every": 500,
                "log_every": 25,
                "progress": progress,
                "out_dir": str(out / "run"),
            },
        }
    )


def _validate(
    folder: Path,
    real: np.ndarray,
    real_labels: np.ndarray,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    fingerprint: str,
) -> dict[str, Any]:
    """The validation report of the demo's synthetic set against its training slices
    (precision/recall/density/coverage and diversity on pixels: seconds, not minutes)."""

    result = run_validation(
        ImageSet("MNI152 view slices (training data)", real, real_labels, "uint8", fingerprint),
        ImageSet("demo synthetic set", synthetic, synthetic_labels, "uint8", ""),
        options=ValidateOptions(metrics=("prdc", "diversity"), extractor="pixels", progress=False),
    )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "report.json", json.dumps(result.report, indent=2) + "\n")
    write_html(result, folder / "report.html")
    return {"report": str(folder / "report.html"), "verdicts": result.report["verdicts"]}


def _summary_markdown(summary: dict[str, Any]) -> str:
    training, diversity = summary["training"], summary["diversity"]
    lines = [
        "# medisynth demo: class-conditional GAN on MNI152 brain slices",
        "",
        f"- Data: {summary['data']['source']} ({summary['data']['image_size']} px), "
        f"classes {summary['data']['class_counts']}",
        f"- Training: {training['steps']} steps in {training['wall_seconds']:.0f} s "
        f"({training['images_per_second']:.0f} images/s, {training['precision']} on "
        f"{training['device']}), status {training['status']}",
        f"- Model package: `{summary['model_package']}`",
        f"- Synthetic set: {summary['synthetic']['count']} PNGs with labels in "
        f"`{summary['synthetic']['folder']}` ({summary['synthetic']['class_counts']})",
        f"- Diversity (median L2 to the nearest other image, pixels in [0, 1]): synthetic "
        f"{diversity['synthetic_median_nn_l2']}, real {diversity['real_median_nn_l2']}",
        f"- Validation report: `{summary['validation']['report']}` -- "
        + "; ".join(summary["validation"]["verdicts"]),
        "",
        "| view | synthetic | real |",
        "| --- | --- | --- |",
    ]
    for name, paths in summary["grids"].items():
        lines.append(
            f"| {name} | ![]({Path(paths['synthetic']).name}) | ![]({Path(paths['real']).name}) |"
        )
    return "\n".join(lines) + "\n"
