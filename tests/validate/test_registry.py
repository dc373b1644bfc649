"""Every registered validation metric, tested from its own declaration: a new metric in
``medisynth.validate.registry.METRICS`` is covered here without a line of its own."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import typer

from medisynth.cli import app
from medisynth.data.sets import ImageSet
from medisynth.validate import keys as K
from medisynth.validate.context import ROLES, RunInputs
from medisynth.validate.metric import Metric, Needs
from medisynth.validate.protocol import ValidateOptions, run_validation
from medisynth.validate.registry import DEFAULT_METRICS, METRICS
from medisynth.validate.report import write_html

NAMES = list(METRICS)
N, SIZE = 12, 16  # sizes divisible by 4 (the segmentation U-Net)


def _set(name: str, seed: int, labels: bool = True, masks: bool = True) -> ImageSet:
    """A tiny uint8-valued set of N images, with 0/1 labels and disc masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    centres = rng.uniform(5, 11, (N, 2))
    discs = (yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2 < 12
    images = np.clip(60 + 120 * discs + rng.normal(0, 25, discs.shape), 0, 255)
    return ImageSet(
        name,
        images[:, None].astype(np.float32),
        np.arange(N) % 2 if labels else None,
        "uint8",
        f"{name}-{seed}",
        masks=discs[:, None].astype(np.float32) if masks else None,
    )


def _options(name: str) -> ValidateOptions:
    return ValidateOptions(
        metrics=(name,), extractor="pixels", radiomics_extractor="radiomics-lite",
        progress=False, seeds=1, epochs=1, bootstrap=20, kid_subsets=3, kid_subset_size=8,
    )  # fmt: skip


def _needs_more_than_two_bare_sets(metric: Metric) -> bool:
    needs = metric.needs
    extra_sets = set(needs.sets) - {K.REAL, K.SYNTHETIC}
    return bool(extra_sets or needs.labels or needs.masks or needs.masks_any)


def _cli_metrics_option() -> Any:
    command = typer.main.get_command(app).commands["validate"]  # type: ignore[attr-defined]
    return next(p for p in command.params if p.name == "metrics")


@pytest.mark.parametrize("name", NAMES)
def test_metric_declares_its_name_inputs_and_keys(name: str) -> None:
    metric = METRICS[name]
    assert isinstance(metric, Metric) and metric.name == name
    assert isinstance(metric.needs, Needs) and {K.REAL, K.SYNTHETIC} <= set(metric.needs.sets)
    assert set(metric.needs.roles()) <= set(ROLES)
    assert metric.keys, "declare the keys its section always has"
    if _needs_more_than_two_bare_sets(metric):
        assert metric.requirement, "say what it needs: the note when it is skipped"
    earlier = NAMES[: NAMES.index(name)]
    assert all(used in earlier for used in metric.uses), "a metric reads earlier sections only"
    option = _cli_metrics_option()
    assert name in option.help
    assert (name in DEFAULT_METRICS) == metric.default == (name in option.default.split(","))


def test_defaults_come_from_the_registry() -> None:
    assert ValidateOptions().metrics == DEFAULT_METRICS
    assert _cli_metrics_option().default == ",".join(DEFAULT_METRICS)
    assert DEFAULT_METRICS == (K.FID, K.KID, K.PRDC, K.DIVERSITY, K.MEMORIZATION)


@pytest.mark.parametrize("name", NAMES)
def test_metric_computes_a_section_with_its_keys(name: str, tmp_path: Any) -> None:
    real, synthetic, train, heldout = (_set(r, seed) for seed, r in enumerate(ROLES))
    result = run_validation(real, synthetic, train, heldout, options=_options(name))
    report = result.report
    assert list(report[K.METRICS]) == [name]
    section = report[K.METRICS][name]
    assert set(METRICS[name].keys) <= set(section), "the keys it declares"
    assert not [w for w in report[K.WARNINGS] if w.startswith(f"{name} skipped")]
    json.dumps(report, allow_nan=False)  # strict JSON
    write_html(result, tmp_path / "report.html")
    assert f"<h3>{name}</h3>" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_metric_without_its_inputs_is_skipped_with_a_note(name: str) -> None:
    """Bare real and synthetic sets (no train, labels or masks): a metric needing more is left
    out with ``"<name> skipped: <requirement>"``; one needing no more runs."""
    metric = METRICS[name]
    real, synthetic = _set("real", 0, False, False), _set("synthetic", 1, False, False)
    inputs = RunInputs.resolve({K.REAL: real, K.SYNTHETIC: synthetic})
    note = metric.missing(inputs)
    if not _needs_more_than_two_bare_sets(metric):
        assert note is None
        return
    assert note == f"{name} skipped: {metric.requirement}"
    report = run_validation(real, synthetic, options=_options(name)).report
    assert report[K.METRICS] == {} and report[K.OPTIONS]["metrics"] == []
    assert note in report[K.WARNINGS]
