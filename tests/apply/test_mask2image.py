"""Mask -> image end to end: train on image + label map folders, ``medisynth generate --masks``
writes pairs that ``medisynth validate``'s reader takes (``load_image_set``: an npz with
``train_masks``, or ``--synthetic images/ --synthetic-masks masks/``), ``medisynth translate``
maps one mask."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medisynth.apply.mask2image import generate_pairs, synthesise, transform_masks
from medisynth.cli import main
from medisynth.config import RunConfig
from medisynth.data.sets import load_image_set
from medisynth.errors import ConfigError
from medisynth.package import load_package
from medisynth.training.engine import train


def write_data(folder: Path, n: int = 6, size: int = 32) -> None:
    """Grey images of discs (bright) on a textured background, and their 0/1/2 label maps
    (2 = the disc's core, 1 = its rim)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        cy, cx = rng.integers(10, size - 10, 2)
        radius = np.hypot(yy - cy, xx - cx)
        labels = np.where(radius < 4, 2, np.where(radius < 7, 1, 0)).astype(np.uint8)
        image = np.array([40, 140, 230], np.float32)[labels] + rng.normal(0, 8, labels.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            folder / "images" / f"{i}.png"
        )
        Image.fromarray(labels).save(folder / "masks" / f"{i}.png")


@pytest.fixture(scope="module")
def mask_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mask2image")
    write_data(folder)
    cfg = RunConfig.from_dict(
        {
            "data": {
                "format": "image_mask",
                "path": str(folder / "images"),
                "mask_path": str(folder / "masks"),
                "patch_size": 16,
            },
            "model": {
                "family": "pix2pix",
                "g_channels": 8,
                "g_depth": 2,
                "d_channels": 8,
                "d_layers": 2,
                "noise_channels": 1,
                "diversity_weight": 1.0,
            },
            "train": {
                "steps": 3,
                "batch_size": 4,
                "sample_every": 0,
                "checkpoint_every": 0,
                "precision": "fp32",
                "progress": False,
                "tensorboard": False,
                "out_dir": str(folder / "run"),
            },
        }
    )
    result = train(cfg)
    assert result.status == "completed" and result.package
    return Path(result.package), folder / "masks"


def test_generate_masks_writes_pairs_that_validate_reads(
    mask_model: tuple[Path, Path], tmp_path: Path
) -> None:
    model, masks = mask_model
    out = tmp_path / "pairs"
    args = ["generate", str(model), "--masks", str(masks), "-n", "8", "--format", "npz"]
    assert main([*args, "--augment-masks", "-o", str(out)]) == 0
    pairs = load_image_set(str(out / "synthetic.npz"))
    assert pairs.images.shape == (8, 1, 32, 32) and pairs.masks is not None
    assert set(np.unique(pairs.masks).tolist()) == {0.0, 1.0, 2.0}
    text = (out / "generation.json").read_text()
    record = json.loads(text)
    assert record["mask_labels"] == 3 and record["augment"]["flips_quarter_turns"] is True
    # the model by its id; no path of the user's (package, masks, output) in the record
    assert record["model_id"] == json.loads((model / "model_card.json").read_text())["model_id"]
    assert record["status"] == "complete"
    assert not any(str(path) in text for path in (model.parent, masks, out))
    assert main([*args, "-o", str(out)]) == 2  # never over a previous set without --overwrite
    assert main([*args, "--class-balance", "1", "-o", str(tmp_path / "x")]) == 2
    # PNG pairs: images/ and masks/ folders, read as --synthetic ... --synthetic-masks ...
    png = tmp_path / "png"
    assert main(["generate", str(model), "--masks", str(masks), "-o", str(png)]) == 0
    pairs = load_image_set(str(png / "images"), masks=str(png / "masks"))
    assert pairs.images.shape == (6, 1, 32, 32) and pairs.masks is not None
    truth = np.stack([np.asarray(Image.open(p)) for p in sorted(masks.glob("*.png"))])
    assert np.array_equal(pairs.masks[:, 0], truth)  # without --augment-masks: the given masks


def test_pairs_keep_a_signed_16_bit_source_type(
    mask_model: tuple[Path, Path], tmp_path: Path
) -> None:
    package = load_package(mask_model[0])
    package.data = dataclasses.replace(package.data, source_dtype="int16")
    generate_pairs(package, mask_model[1], tmp_path / "pairs", n=2, fmt="npz")
    with np.load(tmp_path / "pairs" / "synthetic.npz") as npz:
        assert npz["train_images"].dtype == np.int16  # as plain generation does, not float32


def test_noise_and_sizes(mask_model: tuple[Path, Path], tmp_path: Path) -> None:
    model, masks = mask_model
    package = load_package(model)
    labels = np.asarray(Image.open(masks / "0.png"), np.int64)[None]
    import torch

    one, same, other = (
        synthesise(package, labels, torch.Generator().manual_seed(s)) for s in (1, 1, 2)
    )
    assert np.array_equal(one, same) and not np.allclose(one, other, atol=0.5)
    # any size: 40 x 36 is padded to the U-Net's multiple of 4 and cropped back
    wide = synthesise(package, np.zeros((2, 40, 36), np.int64))
    assert wide.shape == (2, 1, 40, 36) and wide.min() >= 0 and wide.max() <= 255
    # translate maps one mask file to one image file
    out = tmp_path / "image.png"
    assert main(["translate", str(model), str(masks / "0.png"), "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 32)
    gif = tmp_path / "mask.gif"  # a palette GIF reads as three equal channels
    Image.fromarray(np.asarray(Image.open(masks / "0.png"))).save(gif)
    assert main(["translate", str(model), str(gif), "-o", str(tmp_path / "from_gif.png")]) == 0
    with pytest.raises(ConfigError, match="knows labels 0..2"):
        synthesise(package, np.full((1, 32, 32), 3))


def test_transform_masks_keeps_labels_and_makes_new_layouts() -> None:
    labels = np.zeros((4, 24, 24), np.int64)
    labels[:, 4:10, 2:20] = 1
    labels[:, 14:18, 6:9] = 2
    rng = np.random.default_rng(0)
    flipped = transform_masks(labels, rng, elastic=0.0)
    assert np.array_equal(np.bincount(flipped.ravel()), np.bincount(labels.ravel()))  # exact
    assert any(not np.array_equal(f, labels[0]) for f in flipped)
    warped = transform_masks(labels, rng, elastic=3.0)
    assert set(np.unique(warped).tolist()) == {0, 1, 2}
    assert 0.6 < (warped == 1).sum() / (labels == 1).sum() < 1.4


def test_generate_masks_needs_a_mask_model(tmp_path: Path, tiny_run) -> None:  # type: ignore[no-untyped-def]
    package = train(tiny_run(steps=1)).package
    with pytest.raises(ConfigError, match="not a mask -> image model"):
        generate_pairs(package or "", tmp_path, tmp_path / "out")
