"""The CycleGAN family: cycle consistency is learnt, pools resume, settings are strict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medisynth.config import RunConfig
from medisynth.data.histogram import HistogramPrior
from medisynth.errors import ConfigError
from medisynth.export.nifti import write_nifti
from medisynth.gans.base import DataInfo
from medisynth.gans.cyclegan import CycleGAN, CycleGANConfig, ImagePool
from medisynth.package import load_package
from medisynth.training.engine import train

TINY = {"g_channels": 8, "n_blocks": 1, "n_down": 1, "d_channels": 4, "d_layers": 2}


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(16, 16), mode="bilinear")


def test_cyclegan_learns_to_reconstruct_through_both_domains() -> None:
    """Domain B = 1 - A (in [0, 1]); unpaired batches; the cycle loss falls."""
    torch.manual_seed(0)
    gan = CycleGAN.build(CycleGANConfig(**TINY, lr_g=2e-3), DataInfo(1, (16, 16)))
    a_images, b_images = smooth_images(32), -smooth_images(32, seed=1)
    cycles = []
    for step in range(20):
        i, j = (step * 4) % 32, (step * 12) % 32
        losses = gan.train_step({"source": a_images[i : i + 4], "target": b_images[j : j + 4]})
        cycles.append(losses["cycle"])
    assert set(losses) == {"d_a", "d_b", "g_adv", "cycle", "identity"}
    assert np.mean(cycles[-4:]) < 0.65 * np.mean(cycles[:2]), cycles


def test_image_pool_mixes_old_and_new_images() -> None:
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned as given
    new = torch.full((64, 1, 1, 1), 100.0)
    out = pool.query(new).flatten()
    assert 0 < int((out < 100).sum()) <= 4  # some old images came back, each once
    assert ImagePool(0).query(new) is new


def test_state_dict_round_trip_includes_pools() -> None:
    torch.manual_seed(0)
    data = DataInfo(1, (16, 16))
    gan = CycleGAN.build(CycleGANConfig(**TINY), data)
    a = smooth_images(4)
    gan.train_step({"source": a, "target": -a})
    other = CycleGAN.build(CycleGANConfig(**TINY), data)
    other.load_state_dict(gan.state_dict())
    assert torch.equal(other.translate(a), gan.translate(a))
    assert len(other.pools["b"].images) == 4
    assert torch.equal(other.pools["b"].images[0], gan.pools["b"].images[0])
    assert set(gan.inference_nets()) == {"generator", "generator_ba"}


def test_strict_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key 'model.lambda_cycle'"):
        RunConfig.from_dict({"model": {"family": "cyclegan", "lambda_cycle": 10}})
    with pytest.raises(ConfigError, match="pool_size"):
        RunConfig.from_dict({"model": {"family": "cyclegan", "pool_size": -1}})
    with pytest.raises(ConfigError, match="divisible by 4"):
        CycleGAN.build(CycleGANConfig(), DataInfo(1, (30, 30)))
    prior = HistogramPrior((-1.0, 0.0, 1.0), inverted=True)
    with pytest.raises(ConfigError, match="source_prior is for paired models"):
        CycleGAN.build(CycleGANConfig(), DataInfo(1, (32, 32), source_prior=prior))


def test_engine_trains_on_unpaired_volumes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_nifti(tmp_path / "a.nii.gz", (rng.random((1, 16, 16, 5)) * 100).astype(np.float32) + 1)
    write_nifti(tmp_path / "b.nii.gz", (rng.random((1, 16, 16, 9)) * 7).astype(np.float32) + 1)
    cfg = RunConfig.from_dict(
        {
            "data": {
                "format": "unpaired",
                "path": str(tmp_path / "a.nii.gz"),
                "target_path": str(tmp_path / "b.nii.gz"),
                "min_foreground": 0.0,
            },
            "model": {"family": "cyclegan", **TINY},
            "train": {
                "steps": 2,
                "batch_size": 3,
                "progress": False,
                "tensorboard": False,
                "out_dir": str(tmp_path / "run"),
            },
        }
    )
    result = train(cfg)
    package = load_package(result.package or "")
    assert package.data.source_intensity_map is not None
    assert package.data.source_intensity_map.high <= 101 < package.data.intensity_map.high * 20
    assert package.data.intensity_map.high <= 8
    assert package.config.model.family == "cyclegan"


def test_auto_precision_keeps_brain_slices_finite(shared_data: Path, tmp_path: Path) -> None:
    """bf16 autocast made CycleGAN's gradients NaN at step 2 on these slices (CPU, torch 2.13):
    ``precision: auto`` must keep the family in fp32 there, and training must stay finite."""
    case = shared_data / "brainlesion_mri" / "TCGA-DU-7294"
    if not case.is_dir():
        pytest.skip(f"{case} not found")
    cfg = RunConfig.from_dict(
        {
            "data": {
                "format": "unpaired",
                "path": str(case / "TCGA-DU-7294_t1_bet.nii.gz"),
                "target_path": str(case / "TCGA-DU-7294_t2_bet.nii.gz"),
                "axis": 2,
                "min_foreground": 0.1,
                "image_size": 128,
            },
            "model": {
                "family": "cyclegan",
                "g_channels": 16,
                "n_blocks": 4,
                "d_channels": 16,
                "d_layers": 3,
                "lr_g": 5e-4,
            },
            "train": {
                "steps": 3,
                "batch_size": 4,
                "precision": "auto",
                "ema_decay": 0.0,
                "progress": False,
                "tensorboard": False,
                "out_dir": str(tmp_path / "run"),
            },
        }
    )
    result = train(cfg)
    assert result.precision == "fp32" and result.steps == 3
    assert all(np.isfinite(v) for v in result.last_losses.values())
