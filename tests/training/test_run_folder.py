"""The run folder: a finished or stopped run is never silently replaced, ``--overwrite`` removes
only what medisynth wrote, a resumed run logs each step once and clears its stale temp files,
and every file and folder gets the permissions of an ordinary write."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from medisynth.cli import main
from medisynth.config import save_config
from medisynth.errors import ConfigError
from medisynth.training.engine import Trainer, train
from medisynth.training.logging import read_metrics


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_training_into_an_existing_run_is_refused_and_changes_nothing(tiny_run) -> None:  # type: ignore[no-untyped-def]
    first = Trainer(tiny_run(steps=3, checkpoint_every=2, sample_every=2)).fit()
    assert first.status == "completed"
    out = Path(first.out_dir)
    before = _digests(out)
    for again in (tiny_run(steps=5), tiny_run(steps=5, model={"loss": "lsgan"})):
        with pytest.raises(ConfigError) as caught:
            Trainer(again).fit()
        message = str(caught.value)
        assert str(out) in message and "already holds a training run" in message
        assert "--resume" in message and "--overwrite" in message and "train.out_dir" in message
    assert _digests(out) == before  # checkpoint, package, metrics, samples: all untouched
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert card["training"]["steps"] == 3


def test_cli_refuses_an_existing_run_with_one_line_and_status_2(
    tiny_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    config = tiny_run(steps=2)
    save_config(config, tmp_path / "run.yaml")
    assert main(["train", str(tmp_path / "run.yaml")]) == 0
    before = _digests(Path(config.train.out_dir))
    capsys.readouterr()
    assert main(["train", str(tmp_path / "run.yaml"), "--set", "train.steps=5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "--resume" in err and "--overwrite" in err
    assert _digests(Path(config.train.out_dir)) == before


def test_overwrite_replaces_only_what_medisynth_wrote(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    first = Trainer(tiny_run(steps=4, checkpoint_every=2, sample_every=2)).fit()
    assert first.steps == 4
    (out / "notes.txt").write_text("my notes")
    (out / "checkpoints" / "best_by_hand.pt").write_bytes(b"mine")
    (out / "samples" / "favourite.png").write_bytes(b"mine")
    result = train(tiny_run(steps=2), overwrite=True)
    assert result.status == "completed" and result.steps == 2
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "checkpoints" / "best_by_hand.pt").read_bytes() == b"mine"
    assert (out / "samples" / "favourite.png").read_bytes() == b"mine"
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert not (out / "samples" / "step_0000004.png").exists()  # the old run's grids went
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert card["training"]["steps"] == 2


def test_the_cli_has_overwrite(tiny_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tiny_run(steps=2)
    save_config(config, tmp_path / "run.yaml")
    assert main(["train", str(tmp_path / "run.yaml")]) == 0
    assert main(["train", str(tmp_path / "run.yaml"), "--overwrite", "--set", "train.steps=3"]) == 0
    summary = json.loads((Path(config.train.out_dir) / "train_summary.json").read_text())
    assert summary["steps"] == 3


def test_resume_and_overwrite_exclude_each_other(tiny_run) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="--resume.*--overwrite"):
        Trainer(tiny_run(steps=2)).fit(resume=True, overwrite=True)


def test_a_model_folder_that_is_not_a_package_is_refused_before_training(
    tiny_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "mine.txt").write_text("not a package")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="not a medisynth model package"):
            Trainer(tiny_run(steps=2)).fit(overwrite=overwrite)
    assert not (tmp_path / "run" / "config.yaml").exists()
    assert (tmp_path / "run" / "model" / "mine.txt").read_text() == "not a package"


class _Killed(Exception):
    """Stands for a process killed between two checkpoints."""


def test_metrics_hold_each_step_once_after_a_kill_and_resume(tiny_run) -> None:  # type: ignore[no-untyped-def]
    def kill_in_step_6(trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step == 6:  # after step 5 was logged, before step 6 is: the checkpoint is at 4
            raise _Killed

    config = tiny_run(steps=8, checkpoint_every=2, log_every=1)
    with pytest.raises(_Killed):
        Trainer(config, callbacks=[kill_in_step_6]).fit()
    out = Path(config.train.out_dir)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    result = Trainer(config).fit(resume=True)
    assert result.start_step == 4 and result.steps == 8
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, 9))


def test_resume_removes_stale_temp_files_of_killed_writes_only(tiny_run) -> None:  # type: ignore[no-untyped-def]
    config = tiny_run(steps=2, checkpoint_every=2)
    Trainer(config).fit()
    out = Path(config.train.out_dir)
    stale = [
        out / "checkpoints" / ".last.pt.k1ll3d_x.tmp.pt",
        out / ".config.yaml.ab12cd34.tmp.yaml",
        out / "samples" / ".step_0000002.png.zz99yy88.tmp.png",
    ]
    staging = out / ".model.q1w2e3r4.tmp"
    staging.mkdir()
    (staging / "weights.safetensors").write_bytes(b"half")
    mine = [
        out / "checkpoints" / ".last.pt.notes",
        out / "checkpoints" / "mine.tmp.pt",
        out / ".notes.txt.ab12cd34.tmp.txt",  # the temp name of a file medisynth does not write
    ]
    for path in stale + mine:
        path.write_bytes(b"x")
    Trainer(tiny_run(steps=3, checkpoint_every=2)).fit(resume=True)
    assert not any(p.exists() for p in stale) and not staging.exists()
    assert all(p.read_bytes() == b"x" for p in mine)


def test_run_files_and_folders_get_ordinary_permissions(tiny_run) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0o027)
    try:
        result = Trainer(tiny_run(steps=2, checkpoint_every=1, sample_every=1)).fit()
    finally:
        os.umask(old)
    out = Path(result.out_dir)
    modes = {
        str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]
    }
    assert modes["model"] == modes["checkpoints"] == 0o750
    assert modes["model/weights.safetensors"] == modes["checkpoints/last.pt"] == 0o640
    wrong = {k: oct(v) for k, v in modes.items() if v != (0o750 if (out / k).is_dir() else 0o640)}
    assert not wrong, wrong


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(
    tiny_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    first = Trainer(tiny_run(steps=2, checkpoint_every=2)).fit()
    before = _digests(Path(first.out_dir))
    with pytest.raises(ConfigError, match="fewer than one batch"):
        train(tiny_run(steps=2, batch_size=1000), overwrite=True)
    assert _digests(Path(first.out_dir)) == before
