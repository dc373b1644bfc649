"""The apply layer asks what a family declares, not what it is: a family it has never heard of
is translated, enhanced or refused by its ``task`` alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from medisynth.apply.enhance import enhance
from medisynth.apply.generate import generate
from medisynth.apply.translate import translate
from medisynth.config import FamilyConfig, RunConfig
from medisynth.data.intensity import IntensityMap
from medisynth.errors import ConfigError
from medisynth.export.nifti import write_nifti
from medisynth.gans import FAMILIES
from medisynth.gans.base import DataInfo, GANFamily
from medisynth.nets.srresnet import upsample
from medisynth.settings import PAIR_FORMATS


class ToyConfig(FamilyConfig):
    family: Literal["negate", "double"] = "negate"  # type: ignore[assignment]


class _Toy(GANFamily):
    """No training; ``translate`` is a fixed function (``net`` is only there to be packaged)."""

    config_class = ToyConfig

    def setup(self, training: bool) -> None:
        self.nets["net"] = nn.Linear(1, 1)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {}

    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        raise self.unable("sample from noise")

    def sample_grid(self) -> tuple[torch.Tensor, int]:
        return torch.zeros(1, 1, 4, 4), 1


class Negate(_Toy):
    task = "translate"
    data_formats = PAIR_FORMATS

    def translate(self, images: torch.Tensor, batch_size: int = 16, **_: Any) -> torch.Tensor:
        return -images


class Double(_Toy):
    task = "super_resolve"

    @property
    def scale(self) -> int:
        return 2

    def translate(self, images: torch.Tensor, batch_size: int = 16, **_: Any) -> torch.Tensor:
        return upsample(images, 2)


WINDOW = IntensityMap(0.0, 100.0, kind="window", modality="MR")


@pytest.fixture
def toys(monkeypatch: pytest.MonkeyPatch) -> None:
    """``negate`` and ``double`` in the registry, as a family's one registry line puts them."""
    module = next(
        name for name, mod in sys.modules.items() if getattr(mod, "Negate", None) is Negate
    )
    monkeypatch.setitem(FAMILIES, "negate", f"{module}:Negate")
    monkeypatch.setitem(FAMILIES, "double", f"{module}:Double")


def _package(folder: Path, name: str, fmt: str) -> Path:
    from medisynth.gans import get_family
    from medisynth.package import save_package

    cfg = RunConfig.from_dict({"model": {"family": name}, "data": {"format": fmt, "axis": 2}})
    data = DataInfo(channels=1, spatial_shape=(8, 8), intensity_map=WINDOW)
    if name == "negate":
        data.source_intensity_map, data.source_channels = WINDOW, 1
    return save_package(folder, get_family(name).build(cfg.model, data, training=False), cfg)


def test_a_family_that_declares_translate_translates_files(toys: None, tmp_path: Path) -> None:
    model = _package(tmp_path / "negate", "negate", "paired")
    volume = np.random.default_rng(0).uniform(0, 100, (1, 8, 8, 3)).astype(np.float32)
    write_nifti(tmp_path / "in.nii.gz", volume, affine=np.diag([0.5, 0.5, 2.0, 1.0]))
    result = translate(
        model, tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", source_scaling="model"
    )
    assert result.outputs == [str(tmp_path / "out.nii.gz")] and result.slices == 3
    out = nib.load(tmp_path / "out.nii.gz")
    np.testing.assert_allclose(np.asarray(out.dataobj), 100 - volume[0], atol=1e-3)
    np.testing.assert_allclose(out.affine, np.diag([0.5, 0.5, 2.0, 1.0]))
    with pytest.raises(ConfigError, match="negate model; enhance needs a super-resolution model"):
        enhance(model, tmp_path / "in.nii.gz", tmp_path / "e.nii.gz")
    with pytest.raises(ConfigError, match="negate model; generate needs a generative model"):
        generate(model, 2, tmp_path / "set")
    assert not (tmp_path / "set").exists()


def test_a_family_that_declares_super_resolve_enhances_files(toys: None, tmp_path: Path) -> None:
    model = _package(tmp_path / "double", "double", "medmnist")
    volume = np.random.default_rng(0).uniform(0, 100, (1, 6, 4, 3)).astype(np.float32)
    write_nifti(tmp_path / "in.nii.gz", volume, affine=np.diag([2.0, 2.0, 3.0, 1.0]))
    result = enhance(model, tmp_path / "in.nii.gz", tmp_path / "out.nii.gz", scaling="model")
    assert result.scale == 2 and result.shapes == [(12, 8, 3)]
    out = nib.load(tmp_path / "out.nii.gz")
    assert out.shape == (12, 8, 3)
    np.testing.assert_allclose(out.header.get_zooms(), (1.0, 1.0, 3.0))
    with pytest.raises(ConfigError, match="double model; translate needs an image-to-image model"):
        translate(model, tmp_path / "in.nii.gz", tmp_path / "t.nii.gz")
