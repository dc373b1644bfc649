"""The BreastMNIST example config trains on the real file (skipped when the data is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medisynth.config import load_config
from medisynth.package import load_package
from medisynth.training.engine import Trainer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "breastmnist_cgan.yaml"


def test_breastmnist_example_trains_and_packages(shared_data: Path, tmp_path: Path) -> None:
    npz = shared_data / "breastmnist" / "breastmnist.npz"
    config = load_config(
        EXAMPLE,
        [
            f"data.path={npz}",
            "train.steps=3",
            "train.batch_size=16",
            "train.progress=false",
            f"train.out_dir={tmp_path / 'run'}",
        ],
    )
    result = Trainer(config).fit()
    package = load_package(result.package)
    card = package.card["data"]
    assert card["class_names"] == ["malignant", "benign"]
    assert sum(card["class_counts"].values()) == 546
    assert card["fingerprint"] and card["source_dtype"] == "uint8"
    images = package.to_source_units(package.sample(4, labels=[0, 1, 0, 1]))
    assert images.shape == (4, 1, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 255.0 and np.ptp(images) > 0
