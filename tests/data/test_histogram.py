"""Histogram priors: scikit-image's histogram matching as reference, orientation choice."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.exposure import match_histograms

from medisynth.config import RunConfig
from medisynth.data.histogram import HistogramPrior
from medisynth.errors import ConfigError
from medisynth.gans.base import DataInfo


def scan(seed: int, shape: tuple[int, ...] = (24, 24, 8)) -> np.ndarray:
    """A scaled (1, *shape) image: a disc of varied tissue on a -1 background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disc = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (shape[0] / 2.5) ** 2
    values = rng.beta(2, 5, shape) * 1.8 - 0.9
    return np.where(disc[..., None], values, -1.0)[None].astype(np.float32)


def test_the_prior_is_histogram_matching_of_the_foreground() -> None:
    source, reference = scan(0), scan(1)
    target = np.where(reference > -1, -0.8 + 1.7 * ((reference + 1) / 2) ** 2, -1.0)
    prior = HistogramPrior.fit([reference], [target], [reference[0] > -1], "matched")
    inside = source[0] > -1
    out = prior.apply(source, inside)
    expected = match_histograms(source[0][inside], target[0][reference[0] > -1])
    assert np.abs(out[0][inside] - expected).mean() < 0.01
    assert np.all(out[0][~inside] == -1.0)  # background stays background
    # monotone in the source, inverted reverses the order
    order = np.argsort(source[0][inside])
    assert np.all(np.diff(out[0][inside][order]) >= -1e-6)
    flipped = HistogramPrior(prior.target_levels, inverted=True).apply(source, inside)
    assert np.all(np.diff(flipped[0][inside][order]) <= 1e-6)


def test_the_prior_does_not_depend_on_the_source_contrast_curve() -> None:
    source = scan(2)
    curved = np.where(source > -1, ((source + 1) / 2) ** 2.2 * 2 - 1 + 1e-3, -1.0)
    prior = HistogramPrior.fit([scan(3)], [scan(4)], [scan(3)[0] > -1], "matched")
    inside = source[0] > -1
    assert np.abs(prior.apply(source, inside) - prior.apply(curved, inside)).max() < 0.05


@pytest.mark.parametrize("inverted", [False, True])
def test_auto_picks_the_orientation_of_the_training_pairs(inverted: bool) -> None:
    sources = [scan(5), scan(6)]
    targets = [np.where(s > -1, -s if inverted else 0.5 * s, -1.0) for s in sources]
    prior = HistogramPrior.fit(sources, targets, [s[0] > -1 for s in sources], "auto")
    assert prior.inverted is inverted
    again = DataInfo.from_dict(DataInfo(1, (8, 8), source_prior=prior).to_dict()).source_prior
    assert again == prior


def test_clear_errors() -> None:
    prior = HistogramPrior.fit([scan(7)], [scan(8)], [scan(7)[0] > -1], "matched")
    with pytest.raises(ConfigError, match="no foreground"):
        prior.apply(np.full((1, 4, 4), -1.0), np.zeros((4, 4), bool))
    with pytest.raises(ConfigError, match="paired data"):
        RunConfig.from_dict({"data": {"format": "slices", "source_prior": "auto"}})
