"""The contract every registered GAN family honours, checked for each entry of the registry.

Nothing here names a family: a new family is tested as soon as it has its registry line, from
what it declares (``task``, ``data_formats``, ``tiled_volumes``, ``tiny_settings``). Each family is
built tiny for one of its declared data formats, trained one step on a batch of that format, and
applied as its ``task`` says; its state must survive a round trip.
"""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from medisynth.cli import main
from medisynth.config import DataConfig, RunConfig
from medisynth.data.intensity import IntensityMap
from medisynth.data.masks import one_hot
from medisynth.errors import ConfigError
from medisynth.gans import family_names, get_family
from medisynth.gans.base import DataInfo, GANFamily, Task
from medisynth.settings import IMAGE_FORMATS, MASK_FORMATS, PAIR_FORMATS

FAMILIES = family_names()
#: every data format a run config accepts
KNOWN_FORMATS = frozenset(typing.get_args(DataConfig.model_fields["format"].annotation))
SIDE = 16


def declared_format(family_class: type[GANFamily]) -> str:
    """One format the family trains on: image data when it takes them, else pairs, else masks."""
    for kind in (IMAGE_FORMATS, PAIR_FORMATS, MASK_FORMATS):
        declared = sorted(kind & family_class.data_formats)
        if declared:
            return declared[0]
    raise AssertionError(f"{family_class.__name__} declares no known data format")


def tiny_data(fmt: str) -> DataInfo:
    """What the training data of format ``fmt`` would tell the family: 16 x 16, two classes."""
    data = DataInfo(
        channels=1,
        spatial_shape=(SIDE, SIDE),
        class_names=["c0", "c1"],
        class_counts={0: 4, 1: 4},
    )
    if fmt in PAIR_FORMATS:
        data.source_intensity_map, data.source_channels = IntensityMap(-1.0, 1.0), 1
    if fmt in MASK_FORMATS:
        data.source_intensity_map, data.source_channels = IntensityMap(-1.0, 1.0), 2
        data.mask_labels = 2
    return data


def tiny_batch(fmt: str, n: int = 4) -> dict[str, torch.Tensor]:
    """A batch as the engine gives it for ``fmt``, values in [-1, 1]."""
    torch.manual_seed(1)
    images = torch.rand(n, 1, SIDE, SIDE) * 2 - 1
    if fmt in PAIR_FORMATS:
        return {"source": images, "target": -images}
    if fmt in MASK_FORMATS:
        return {"source": one_hot((images[:, 0] > 0).long(), 2), "target": images}
    return {"image": images, "label": torch.arange(n) % 2}


def build(name: str, training: bool = True) -> tuple[GANFamily, str]:
    """A tiny instance of family ``name`` and the declared format it was built for."""
    family_class = get_family(name)
    fmt = declared_format(family_class)
    settings = {"family": name, **family_class.tiny_settings}
    config = RunConfig.from_dict({"model": settings, "data": {"format": fmt}}).model
    torch.manual_seed(0)
    return family_class.build(config, tiny_data(fmt), training=training), fmt


@pytest.mark.parametrize("name", FAMILIES)
def test_the_declaration_is_complete_and_consistent(name: str) -> None:
    family_class = get_family(name)
    assert issubclass(family_class, GANFamily) and family_class.name() == name
    assert family_class.task in typing.get_args(Task)
    assert family_class.data_formats and family_class.data_formats <= KNOWN_FORMATS
    assert family_class.tiny_settings, "tiny_settings: the contract test builds the family"
    for fmt in family_class.data_formats:
        family_class.check_data_format(fmt)
    for fmt in sorted(KNOWN_FORMATS - family_class.data_formats):
        with pytest.raises(ConfigError, match=rf"data.format '{fmt}' does not fit the {name}"):
            family_class.check_data_format(fmt)
    if family_class.tiled_volumes:
        assert family_class.task == "sample", "tiled sampling draws images from noise"


@pytest.mark.parametrize("name", FAMILIES)
def test_a_tiny_model_trains_a_step_and_does_its_task(name: str) -> None:
    family, fmt = build(name)
    data = family.data
    losses = family.train_step(tiny_batch(fmt))
    assert losses and all(isinstance(v, float) and np.isfinite(v) for v in losses.values())
    images = torch.rand(3, data.source_channels or data.channels, SIDE // 2, SIDE // 2) * 2 - 1
    if family.task == "sample":
        assert family.conditional == (family.num_classes > 0)
        assert family.num_classes in (0, data.num_classes)
        labels = torch.tensor([0, 1, 1]) if family.conditional else None
        samples = family.sample(3, labels, generator=torch.Generator().manual_seed(0))
        assert samples.shape == (3, data.channels, SIDE, SIDE) and samples.dtype == torch.float32
        assert float(samples.abs().max()) <= 1.0
        with pytest.raises(ConfigError, match="cannot translate images"):
            family.translate(images)
    else:
        out = family.translate(images)
        assert family.scale >= 1 and (family.task == "super_resolve") == (family.scale > 1)
        side = SIDE // 2 * family.scale
        assert out.shape == (3, data.channels, side, side) and out.dtype == torch.float32
        # the monitoring sources of the first batch come back translated
        assert family.sample(3).shape == (3, data.channels, SIDE, SIDE)
        untrained, _ = build(name, training=False)
        with pytest.raises(ConfigError, match="cannot sample from noise"):
            untrained.sample(1)
    grid, per_row = family.sample_grid()
    assert grid.ndim == 4 and per_row >= 1
    assert family.inference_nets()


@pytest.mark.parametrize("name", FAMILIES)
def test_tiled_sampling_is_there_exactly_when_declared(name: str) -> None:
    family, _ = build(name, training=False)
    if not family.tiled_volumes:
        with pytest.raises(ConfigError, match="in tiles"):
            family.tiled_grid((20, 24))
        assert family.refine_factors() == ()
        return
    grid = family.tiled_grid((20, 24))
    assert all(g >= s for g, s in zip(grid, (20, 24), strict=True))
    out = np.zeros((family.data.channels, *grid), np.float32)
    label = 1 if family.conditional else None
    family.sample_tiled(out, generator=torch.Generator().manual_seed(0), label=label)
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0 and out.std() > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_state_survives_a_round_trip(name: str) -> None:
    family, fmt = build(name)
    family.train_step(tiny_batch(fmt))
    other, _ = build(name)
    other.load_state_dict(family.state_dict())
    for (_, a), (_, b) in zip(family.modules(), other.modules(), strict=True):
        for ta, tb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(ta, tb)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_data_format_the_family_does_not_declare_is_refused_before_reading_data(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``medisynth train`` exits 2 on the config alone: the data path, which does not exist,
    is never looked at."""
    family_class = get_family(name)
    undeclared = sorted(KNOWN_FORMATS - family_class.data_formats)
    if not undeclared:
        pytest.skip(f"{name} trains on every data format")
    missing = tmp_path / "no-such-data"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model:\n  family: {name}\n"
        f"data:\n  format: {undeclared[0]}\n  path: {missing}\n  target_path: {missing}\n"
        f"  mask_path: {missing}\ntrain:\n  out_dir: {tmp_path / 'run'}\n",
        encoding="utf-8",
    )
    assert main(["train", str(config)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: data.format '{undeclared[0]}' does not fit the {name}")
    assert all(fmt in error for fmt in family_class.data_formats)
    assert str(missing) not in error and not (tmp_path / "run").exists()
