"""The benchmark scripts run end to end (tiny sizes; the figures themselves are not checked)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_throughput_and_loss_curves(tmp_path: Path, tiny_npz: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bench = load("train_throughput")
    monkeypatch.setattr(bench, "find_breastmnist", lambda: tiny_npz)
    args = ["--size", "64", "--batch-size", "4", "--steps", "1", "--repeats", "1"]
    assert bench.main([*args, "--warmup", "0", "--loss-curves", "4", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "train_throughput.json").read_text())
    assert result["ours_images_per_second"] > 0 and result["reference_images_per_second"] > 0
    assert result["ratio"] > 0
    with open(tmp_path / "loss_curves.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and "fp32_d_loss" in rows[0]
    assert "fp32_g_loss" in rows[0]


def test_breastmnist_diversity_on_a_small_model(tmp_path: Path, tiny_run) -> None:  # type: ignore[no-untyped-def]
    from medisynth.training.engine import Trainer

    config = tiny_run(steps=2)
    result = Trainer(config).fit()
    diversity = load("breastmnist_diversity")
    data = Path(config.data.path or "")
    assert diversity.main([result.package, "--data", str(data), "--out", str(tmp_path / "d")]) == 0
    figures = json.loads((tmp_path / "d" / "diversity.json").read_text())
    assert figures["real_median_nn_l2"] > 0 and figures["n_synthetic"] == 48
    assert (tmp_path / "d" / "grid_synthetic_disc.png").is_file()
