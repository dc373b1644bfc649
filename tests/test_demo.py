"""A tiny run of the offline demo covers its whole code path (data, training, outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medisynth.demo import median_nn_distance, run_demo
from medisynth.errors import ConfigError


def test_tiny_demo_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    summary = run_demo(out, minutes=2, steps=3, image_size=32, per_class=4, progress=False)
    assert summary["training"]["steps"] == 3
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["synthetic"]["class_counts"] == {"axial": 4, "coronal": 4, "sagittal": 4}
    assert len(list((out / "synthetic").glob("*/*.png"))) == 12
    for view in ("axial", "coronal", "sagittal"):
        grid = PILImage.open(out / f"grid_synthetic_{view}.png")
        assert grid.size[0] > 32
        assert (out / f"grid_real_{view}.png").is_file()
    assert "axial" in (out / "summary.md").read_text()
    assert summary["diversity"]["real_median_nn_l2"] > 0
    # the demo ends with the validation report of its synthetic set
    report = json.loads((out / "validation" / "report.json").read_text())
    assert {"prdc", "diversity"} <= set(report["metrics"])
    assert report["verdicts"] == on_disk["validation"]["verdicts"]
    assert (out / "validation" / "report.html").stat().st_size > 1000
    assert "Validation report" in (out / "summary.md").read_text()
    # running again into the same demo folder is fine; into someone else's folder is not
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a demo output folder"):
        run_demo(other, steps=1, image_size=32)


def test_median_nn_distance_sees_collapse() -> None:
    rng = np.random.default_rng(0)
    diverse = rng.uniform(0, 1, (50, 1, 8, 8))
    collapsed = np.repeat(diverse[:1], 50, axis=0) + rng.normal(0, 0.01, (50, 1, 8, 8))
    assert median_nn_distance(collapsed) < 0.2 < median_nn_distance(diverse)
