"""Intensity maps: the right rule per modality, exact inverses, serialisation, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medisynth.data.intensity import (
    CT_WINDOWS,
    IntensityMap,
    fit_intensity_map,
    foreground_mask,
    intensity_map_from_dict,
)
from medisynth.errors import ConfigError


def test_ct_window_maps_the_window_edges_to_minus_one_and_one() -> None:
    m = fit_intensity_map([np.array([-1000.0, 40.0])], modality="CT", ct_window="lung")
    centre, width = CT_WINDOWS["lung"]
    edges = np.array([centre - width / 2, centre, centre + width / 2], np.float32)
    np.testing.assert_allclose(m.forward(edges), [-1.0, 0.0, 1.0], atol=1e-6)
    assert m.forward(np.array([-3000.0]))[0] == -1.0  # clipped


def test_mr_uses_robust_percentiles_of_the_foreground() -> None:
    rng = np.random.default_rng(0)
    volume = np.zeros((20, 20, 20), np.float32)
    volume[5:15, 5:15, 5:15] = rng.gamma(4.0, 100.0, size=(10, 10, 10))
    volume[7, 7, 7] = 1e6  # one hot voxel must not set the scale
    m = fit_intensity_map([volume], modality="MR")
    foreground = volume[volume != 0]
    assert m.low == pytest.approx(np.percentile(foreground, 0.5))
    assert m.high == pytest.approx(np.percentile(foreground, 99.5))
    assert m.high < 1e5
    assert m.kind == "percentile"


def test_integer_images_are_scaled_by_their_type_range_and_invert_exactly() -> None:
    values = np.arange(0, 65536, 7, dtype=np.uint16)
    m = fit_intensity_map([values], modality="CR", source_dtype="uint16")
    assert (m.low, m.high, m.clip) == (0.0, 65535.0, False)
    y = m.forward(values.astype(np.float32))
    assert y.min() >= -1 and y.max() <= 1
    np.testing.assert_array_equal(np.round(m.inverse(y)).astype(np.uint16), values)


def test_inverse_is_exact_inside_the_window_for_numpy_and_torch() -> None:
    m = IntensityMap.window("CT", centre=40, width=400)
    hu = np.arange(-160, 241, dtype=np.float32)
    np.testing.assert_array_equal(np.round(m.inverse(m.forward(hu))), hu)
    t = torch.from_numpy(hu)
    assert torch.equal(torch.round(m.inverse(m.forward(t))), t)


def test_map_serialises_through_json() -> None:
    m = IntensityMap.percentile([np.arange(100.0)], modality="MR")
    restored = intensity_map_from_dict(json.loads(json.dumps(m.to_dict())))
    assert restored == m


def test_bad_maps_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="low < high"):
        IntensityMap(5.0, 5.0)
    with pytest.raises(ConfigError, match="unknown CT window 'lungs'.*lung"):
        IntensityMap.ct_preset("lungs")
    with pytest.raises(ConfigError, match="unknown intensity-map keys"):
        intensity_map_from_dict({"low": 0, "high": 1, "gamma": 2})
    with pytest.raises(ConfigError, match="empty"):
        IntensityMap.percentile([np.array([np.nan])])


def test_data_labelled_ct_but_not_in_hounsfield_units_is_refused() -> None:
    png_export = np.arange(256, dtype=np.float32)
    with pytest.raises(ConfigError, match="do not look like Hounsfield"):
        fit_intensity_map([png_export], modality="CT", source_dtype="uint8")


def test_the_foreground_keeps_the_darkest_tissue() -> None:
    raw = np.zeros((1, 6, 6))
    raw[0, 1:5, 1:5] = np.linspace(10, 100, 16).reshape(4, 4)  # its darkest tissue: 10
    assert foreground_mask(raw).sum() == 16
    assert foreground_mask(raw, level=50.0).sum() == 9  # 52, 58, ..., 100


def test_in_brain_normalisation_puts_raw_and_z_scored_scans_on_one_scale() -> None:
    """The same brain stored as raw int16 (0 outside) and z-scored inside the brain with a
    constant background: with the mask, both map to one 0..1 scale, 0 outside the brain, and
    1% of the brain at each end (the percentiles map to 0 and 1)."""
    from medisynth.data.intensity import BRAIN_PERCENTILES, brain_region, normalise_in_brain

    rng = np.random.default_rng(0)
    brain = np.zeros((20, 20, 10), bool)
    brain[3:17, 4:16, 2:8] = True
    raw = np.where(brain, rng.gamma(4.0, 200.0, brain.shape), 0).astype(np.int16)[None]
    values = raw[0][brain].astype(np.float64)
    zscored = np.full(raw.shape, -2.7, np.float32)
    zscored[0][brain] = (values - values.mean()) / values.std()
    a = normalise_in_brain(raw)
    b = normalise_in_brain(zscored, brain)
    assert np.allclose(a, b, atol=1e-5)
    assert a[0][~brain].max() == 0.0
    low, high = np.percentile(values, BRAIN_PERCENTILES)
    expected = np.clip((values - low) / (high - low), 0, 1)
    assert np.allclose(a[0][brain], expected, atol=1e-6)
    assert 0.009 < np.mean(a[0][brain] == 0.0) < 0.02 and np.mean(a[0][brain] == 1.0) > 0.009
    assert np.array_equal(brain_region(raw), brain)
    with pytest.raises(ConfigError, match="not on the scan's grid"):
        normalise_in_brain(raw, brain[:-1])
    with pytest.raises(ConfigError, match="no brain voxel"):
        normalise_in_brain(np.zeros((1, 4, 4)))
