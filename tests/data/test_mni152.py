"""The MNI152 template as training data (``data.format: mni152_views``, the demo's data)."""

from __future__ import annotations

import numpy as np

from medisynth.data.mni152 import mni152_t1_path, mni152_views


def test_mni152_views_are_three_real_anatomical_views() -> None:
    assert mni152_t1_path().name.startswith("mni_icbm152_t1")
    views = mni152_views(32)
    assert views.images.shape[1:] == (1, 32, 32)
    counts = np.bincount(views.labels)
    assert len(counts) == 3 and counts.min() >= 50
    assert views.images.min() >= 0 and views.images.max() <= 255
    means = [views.images[views.labels == k].mean(axis=0) for k in range(3)]
    assert min(np.abs(means[a] - means[b]).mean() for a, b in [(0, 1), (0, 2), (1, 2)]) > 5
