"""``medisynth validate --study STUDY``: the reader study's statistics in the validation report
(checked against scipy / statsmodels / sklearn on the raw database) and in the model card, with
no reader's name, token or comment in either."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from medisynth.cli import main
from medisynth.package import CARD_JSON
from medisynth.study import store
from medisynth.study.create import create_study
from medisynth.validate import keys as K
from medisynth.validate.protocol import ValidateOptions, validate

NAMES = {"Alice Example": 0.9, "Bob Sample": 0.6}
COMMENT = "Alice thinks the texture is off"
#: what must never leave the study; whole phrases with spaces, which the base64 of an embedded
#: plot cannot contain (a bare "Bob" turns up in one page of a few)
PRIVATE = (*NAMES, COMMENT)
FAST = ["--metrics", "diversity", "--extractor", "pixels"]


def _sets(folder: Path, seed: int = 0) -> tuple[str, str]:
    """A uint8 npz 'real' set with labels and a uint8 npy 'synthetic' set (30 images each)."""
    rng = np.random.default_rng(seed)
    real, synthetic = folder / f"real{seed}.npz", folder / f"synthetic{seed}.npy"
    np.savez(real, test_images=rng.integers(0, 256, (30, 12, 12), dtype=np.uint8),
             test_labels=rng.integers(0, 2, (30, 1)))  # fmt: skip
    np.save(synthetic, rng.integers(0, 256, (30, 1, 12, 12)).astype(np.uint8))
    return f"{real}:test", str(synthetic)


def _answer(study: Path, names: dict[str, float] = NAMES) -> list[str]:
    """Readers of known accuracy answer every image; returns their tokens."""
    conn = store.open_study(study)
    truth = {image: t for image, t, _, _ in store.image_table(conn)}
    rng = np.random.default_rng(1)
    tokens = []
    for name, accuracy in names.items():
        tokens.append(store.add_reader(conn, name, seed=int(rng.integers(1 << 30))))
        for image in store.reader_order(conn, name):
            right = rng.random() < accuracy
            call = (
                truth[image] if right else {"real": "synthetic", "synthetic": "real"}[truth[image]]
            )
            store.record_answer(conn, name, image, call, int(rng.integers(1, 6)), COMMENT)
    conn.close()
    return tokens


def _run(tmp_path: Path, real: str, synthetic: str, study: Path, out: str = "out") -> int:
    args = ["validate", "--real", real, "--synthetic", synthetic, "-o", str(tmp_path / out)]
    return main([*args, *FAST, "--study", str(study)])


def _reference(study: Path) -> dict[str, Any]:
    """The pooled statistics computed from the raw database with the reference libraries."""
    conn = sqlite3.connect(study / store.DATABASE)
    rows = conn.execute(
        "SELECT a.reader, a.image, i.truth, a.answer, a.confidence FROM answers a "
        "JOIN images i ON i.id = a.image"
    ).fetchall()
    conn.close()
    correct = sum(truth == answer for _, _, truth, answer, _ in rows)
    low, high = proportion_confint(correct, len(rows), alpha=0.05, method="wilson")
    scores = [c if answer == "synthetic" else -c for _, _, _, answer, c in rows]
    images = sorted({image for _, image, _, _, _ in rows})
    table = np.zeros((len(images), 2))
    for _, image, _, answer, _ in rows:
        table[images.index(image), ("real", "synthetic").index(answer)] += 1
    return {
        "n_answers": len(rows),
        "accuracy": correct / len(rows),
        "accuracy_ci": [low, high],
        "p_value": binomtest(correct, len(rows), 0.5).pvalue,
        "auc": roc_auc_score([t == "synthetic" for _, _, t, _, _ in rows], scores),
        "kappa": fleiss_kappa(table, method="fleiss"),
    }


@pytest.fixture
def answered(tmp_path: Path) -> tuple[str, str, Path, list[str]]:
    real, synthetic = _sets(tmp_path)
    create_study(real, synthetic, tmp_path / "study", n=20, seed=0)
    return real, synthetic, tmp_path / "study", _answer(tmp_path / "study")


def test_study_statistics_join_the_report(
    tmp_path: Path, answered: tuple[str, str, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    real, synthetic, study, tokens = answered
    assert _run(tmp_path, real, synthetic, study) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    section = report[K.READER_STUDY]
    for key, value in _reference(study).items():
        assert section[key] == pytest.approx(value), key
    assert (section["n_readers"], section["n_invited"], section["n_images"]) == (2, 2, 20)
    assert (section["n_real"], section["n_synthetic"]) == (10, 10)
    assert sorted(section["readers"]) == ["reader 1", "reader 2"]
    assert section["readers"]["reader 2"]["accuracy"] >= section["readers"]["reader 1"]["accuracy"]
    assert section["match"] == {"real": "same set", "synthetic": "same set"}
    assert not [w for w in report[K.WARNINGS] if w.startswith("reader study")]
    line = next(v for v in report[K.VERDICTS] if v.startswith("reader study:"))
    assert line in printed and f"{section['n_answers']} answers" in line
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Reader study</h2>" in page and page.count('alt="reader study plot"') == 2
    for text in (page, json.dumps(report)):  # names, tokens and comments stay in the study
        assert not any(private in text for private in PRIVATE)
        assert not any(token in text for token in tokens)


def test_a_study_without_answers_is_a_statement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, synthetic = _sets(tmp_path)
    create_study(real, synthetic, tmp_path / "study", n=20, seed=0)
    conn = store.open_study(tmp_path / "study")
    store.add_reader(conn, "Alice Example")
    conn.close()
    assert _run(tmp_path, real, synthetic, tmp_path / "study") == 0
    assert (
        "reader study: no answers yet (20 images, 1 reader(s) invited)" in capsys.readouterr().out
    )
    section = json.loads((tmp_path / "out" / "report.json").read_text())[K.READER_STUDY]
    assert section["n_answers"] == 0 and section["accuracy"] is None
    assert section["n_readers"] == 0 and section["readers"] == {}
    assert "No answers yet" in (tmp_path / "out" / "report.html").read_text()


def test_a_folder_that_is_not_a_study_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, synthetic = _sets(tmp_path)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / store.DATABASE).write_bytes(b"not a database at all" * 100)
    other = tmp_path / "other"  # an SQLite database, but not a study's
    other.mkdir()
    sqlite3.connect(other / store.DATABASE).execute("CREATE TABLE t (x)").connection.close()
    for folder, message in ((tmp_path, "not a reader study (no study.sqlite)"),
                            (damaged, "not a reader study's database"),
                            (other, "not a reader study's database")):  # fmt: skip
        assert _run(tmp_path, real, synthetic, folder) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
        assert not (tmp_path / "out").exists()  # refused before any metric ran


def test_a_study_of_other_sets_is_warned_about(
    tmp_path: Path, answered: tuple[str, str, Path, list[str]]
) -> None:
    real, _, study, _ = answered
    _, other_synthetic = _sets(tmp_path, seed=5)
    assert _run(tmp_path, real, other_synthetic, study) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report[K.READER_STUDY]["match"] == {"real": "same set", "synthetic": "another set"}
    assert any("its synthetic images were drawn from another set" in w for w in report[K.WARNINGS])
    # a study that records no sources (made by an earlier medisynth): said, not guessed
    conn = sqlite3.connect(study / store.DATABASE)
    conn.execute("DELETE FROM meta WHERE key = 'sources'")
    conn.commit()
    conn.close()
    assert _run(tmp_path, real, other_synthetic, study, out="old") == 0
    report = json.loads((tmp_path / "old" / "report.json").read_text())
    assert report[K.READER_STUDY]["match"] == {"real": "unknown", "synthetic": "unknown"}
    assert any("does not record which sets" in w for w in report[K.WARNINGS])


def test_the_card_records_counts_and_pooled_statistics_only(
    tmp_path: Path, tiny_run: Any, tiny_npz: Path
) -> None:
    """validate --model PACKAGE --study: the card gets the study's numbers, no names; a study
    of a set that the same model generated matches it by model."""
    from medisynth.apply.generate import generate
    from medisynth.training.engine import train

    package = Path(train(tiny_run(steps=2)).package or "")
    generate(package, 16, tmp_path / "generated", fmt="npz")
    create_study(f"{tiny_npz}:val", str(tmp_path / "generated" / "synthetic.npz"),
                 tmp_path / "study", n=8, seed=0)  # fmt: skip
    tokens = _answer(tmp_path / "study")
    options = ValidateOptions(metrics=("diversity",), extractor="pixels", progress=False)
    report = validate(
        f"{tiny_npz}:val", None, tmp_path / "out", options, train=f"{tiny_npz}:train",
        model=package, study=tmp_path / "study",
    )  # fmt: skip
    section = report[K.READER_STUDY]
    assert section["match"] == {"real": "same set", "synthetic": "same model"}
    card = json.loads((package / CARD_JSON).read_text())
    recorded = card["metrics"]["reader_study"]
    assert set(recorded) == {"n_readers", "n_images", "n_real", "n_synthetic", "n_answers",
                             "accuracy", "accuracy_ci", "p_value", "sensitivity",
                             "specificity", "auc", "kappa", "level", "match"}  # fmt: skip
    for key in ("n_readers", "n_images", "n_answers", "accuracy", "accuracy_ci", "kappa"):
        assert recorded[key] == section[key], key
    assert (recorded["n_readers"], recorded["n_images"], recorded["n_answers"]) == (2, 8, 16)
    markdown = (package / "model_card.md").read_text()
    assert f"Reader study: accuracy {section['accuracy']:.3f}" in markdown
    for text in (json.dumps(card), markdown):
        assert not any(private in text for private in PRIVATE)
        assert not any(token in text for token in tokens)
