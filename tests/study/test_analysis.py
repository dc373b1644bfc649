"""Statistics of a reader study, against statsmodels / scipy / sklearn called directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from medisynth.cli import main
from medisynth.study import store
from medisynth.study.analysis import fleiss, summarise

from .conftest import write_sets

ACCURACY = {"ann": 0.9, "bob": 0.7, "cat": 0.5}


def _simulate(conn, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Readers of known accuracy answer every image; confident when right more often."""
    rng = np.random.default_rng(seed)
    truths = {i: t for i, t, _, _ in store.image_table(conn)}
    for name, accuracy in ACCURACY.items():
        store.add_reader(conn, name, seed=int(rng.integers(1 << 30)))
        for image in store.reader_order(conn, name):
            right = rng.random() < accuracy
            truth = truths[image]
            call = truth if right else ("real" if truth == "synthetic" else "synthetic")
            confidence = int(rng.integers(3, 6) if right else rng.integers(1, 4))
            store.record_answer(conn, name, image, call, confidence, "")


@pytest.fixture
def big_study(tmp_path: Path) -> Path:
    from medisynth.study.create import create_study

    real, synthetic = write_sets(tmp_path, n=200, size=4)
    create_study(real, synthetic, tmp_path / "study", n=400, seed=3)
    conn = store.open_study(tmp_path / "study")
    _simulate(conn)
    conn.close()
    return tmp_path / "study"


def test_simulated_accuracy_is_recovered_and_matches_references(big_study: Path) -> None:
    conn = store.open_study(big_study)
    answers = store.load_answers(conn)
    summary = summarise(answers)
    for name, accuracy in ACCURACY.items():
        stats = summary["readers"][name]
        low, high = stats["ci"]
        assert low <= accuracy <= high, (name, stats)
        rows = [a for a in answers if a.reader == name]
        correct = sum(a.answer == a.truth for a in rows)
        assert stats["n"] == len(rows) == 400
        assert (low, high) == pytest.approx(proportion_confint(correct, 400, method="wilson"))
        assert stats["p_value"] == pytest.approx(binomtest(correct, 400, 0.5).pvalue)
        truths = [a.truth == "synthetic" for a in rows]
        scores = [a.confidence * (1 if a.answer == "synthetic" else -1) for a in rows]
        assert stats["auc"] == pytest.approx(roc_auc_score(truths, scores))
        synthetic = [a for a in rows if a.truth == "synthetic"]
        real = [a for a in rows if a.truth == "real"]
        assert stats["sensitivity"] == sum(a.answer == "synthetic" for a in synthetic) / len(
            synthetic
        )
        assert stats["specificity"] == sum(a.answer == "real" for a in real) / len(real)
    assert summary["readers"]["ann"]["p_value"] < 1e-6
    assert summary["readers"]["ann"]["auc"] > summary["readers"]["bob"]["auc"]
    # Fleiss' kappa: statsmodels on the (image x category) count table
    images = sorted({a.image for a in answers})
    table = [
        [sum(a.image == i and a.answer == c for a in answers) for c in ("real", "synthetic")]
        for i in images
    ]
    assert summary["fleiss"]["kappa"] == pytest.approx(fleiss_kappa(np.array(table)))
    assert summary["fleiss"]["images"] == 400
    # fooled: the fraction of the three readers calling each synthetic image real
    fooled = summary["fooled"]
    assert len(fooled) == 200
    some = next(iter(fooled))
    calls = [a.answer for a in answers if a.image == some]
    assert fooled[some] == {"readers": 3, "fooled": calls.count("real") / 3}
    # per class: the real images carry labels 0/1
    assert set(summary["classes"]) == {"0", "1"}
    assert sum(s["n"] for s in summary["classes"].values()) == 3 * 200


def test_fleiss_kappa_on_a_hand_computed_table() -> None:
    # 4 images, 3 readers: all agree on 2 (real), 2 vs 1 on the others
    calls = {"i1": "rrr", "i2": "rrr", "i3": "rrs", "i4": "ssr"}
    answers = [
        store.Answer(
            f"reader{k}", image, "real", None, "real" if c == "r" else "synthetic", 3, "", ""
        )  # fmt: skip
        for image, row in calls.items()
        for k, c in enumerate(row)
    ]
    # counts (real, synthetic): (3,0) (3,0) (2,1) (1,2); P_i = 1, 1, 1/3, 1/3 -> P_bar = 2/3
    # p_real = 9/12, p_syn = 3/12 -> P_e = 9/16 + 1/16 = 5/8; kappa = (2/3 - 5/8) / (3/8) = 1/9
    assert fleiss(answers)["kappa"] == pytest.approx(1 / 9)


def test_analyze_writes_the_report(big_study: Path, tmp_path: Path) -> None:
    conn = store.open_study(big_study)
    store.record_answer(conn, "cat", store.image_ids(conn)[0], "real", 1, "<b>x</b>")
    conn.close()
    assert main(["study", "analyze", str(big_study), "-o", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["pooled"]["n"] == 1200
    lines = (tmp_path / "report" / "answers.csv").read_text().splitlines()
    assert lines[0].startswith("reader,image,truth") and len(lines) == 1201
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Most convincing" in page and page.count("data:image/png;base64,") >= 2 + 16


def test_no_answers_yet(study: Path, tmp_path: Path) -> None:
    assert main(["study", "analyze", str(study), "-o", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["pooled"]["accuracy"] is None
