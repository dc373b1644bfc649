"""``benchmarks/study_load.py`` runs end to end in a tiny mode (the figures are not checked)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "study_load.py"


def test_the_load_benchmark_counts_every_answer(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("study_load", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["study_load"] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    args = ["--readers", "3", "--images", "4", "--think-ms", "1", "--timeout", "60"]
    assert bench.main([*args, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "study_load.json").read_text())
    assert result["acknowledged"] == result["stored"] == result["expected_answers"] == 12
    assert result["lost"] == 0 and result["errors"] == []
    assert result["latency"]["image"]["n"] == result["latency"]["answer"]["n"] == 12
    assert result["latency"]["page"]["n"] == 15  # each reader's last page says "done"
    assert result["latency"]["answer"]["p95_ms"] > 0
