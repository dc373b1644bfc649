"""Strict run configs: unknown keys fail with a hint, overrides apply, YAML round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from medisynth.cli import main
from medisynth.config import RunConfig, apply_override, load_config, save_config
from medisynth.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("data", "where", "suggestion"),
    [
        ({"sed": 1}, "'sed'", "'seed'"),
        ({"train": {"stpes": 10}}, "'train.stpes'", "'steps'"),
        ({"model": {"los": "hinge"}}, "'model.los'", "'loss'"),
        ({"data": {"pth": "x.npz"}}, "'data.pth'", "'path'"),
    ],
)
def test_unknown_keys_fail_with_a_did_you_mean_hint(
    data: dict, where: str, suggestion: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict(data)
    message = str(caught.value)
    assert f"unknown key {where}" in message
    assert f"did you mean {suggestion}" in message


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    with pytest.raises(ConfigError, match="known keys in 'train': batch_size, ") as caught:
        RunConfig.from_dict({"train": {"zzzz": 1}})
    assert "did you mean" not in str(caught.value)


def test_bad_values_say_where_and_what() -> None:
    with pytest.raises(ConfigError, match=r"train\.steps: .*greater than or equal to 1"):
        RunConfig.from_dict({"train": {"steps": 0}})
    with pytest.raises(ConfigError, match=r"model\.loss"):
        RunConfig.from_dict({"model": {"loss": "wasserstein"}})
    with pytest.raises(ConfigError, match="unknown GAN family 'stylegan'.*known families: .*dcgan"):
        RunConfig.from_dict({"model": {"family": "stylegan"}})


def test_overrides_are_parsed_as_yaml_and_validated() -> None:
    cfg = RunConfig.from_dict(
        {"train": {"steps": 5}},
        [
            "train.steps=9",
            "model.lr_d=1e-3",
            "model.diffaugment=[cutout]",
            "train.max_minutes=null",
        ],
    )
    assert cfg.train.steps == 9 and cfg.model.lr_d == pytest.approx(1e-3)
    assert cfg.model.diffaugment == ["cutout"] and cfg.train.max_minutes is None
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        RunConfig.from_dict({}, ["train.batchsize=3"])
    with pytest.raises(ConfigError, match="key=value"):
        RunConfig.from_dict({}, ["train.steps"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_override({"seed": 1}, "seed.x=2")


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = RunConfig.from_dict({"seed": 4, "model": {"loss": "lsgan", "betas": [0.5, 0.99]}})
    save_config(cfg, tmp_path / "run.yaml")
    again = load_config(tmp_path / "run.yaml")
    assert again == cfg
    assert again.model.betas == (0.5, 0.99)


def test_yaml_off_yes_and_no_stay_words(tmp_path: Path) -> None:
    """YAML 1.1 would read ``ada: off`` as ``False`` and fail the choice of strings; the config
    reader keeps 1.2 booleans, and boolean settings still take the words."""
    (tmp_path / "run.yaml").write_text(
        "model: {family: style, ada: off, conditional: yes}\ntrain: {record_paths: no}\n",
        encoding="utf-8",
    )
    cfg = load_config(tmp_path / "run.yaml", ["model.ada=off"])
    assert cfg.model.ada == "off" and cfg.model.conditional is True
    assert cfg.train.record_paths is False
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("train: {steps: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_are_valid(example: Path) -> None:
    load_config(example)


def test_cli_train_rejects_an_unknown_key_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  stepz: 3\n")
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.stepz'" in err and "did you mean 'steps'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "expected"),
    [
        (
            "train:\n  steps: 3\n",
            ["train.steps=abc"],
            "train.steps: Input should be a valid integer",
        ),
        ("model:\n  g_channels: abc\n  d_channels: -3\n", [], "model.d_channels"),
        ("train: {steps: [\n", [], "not valid YAML (line 2, column 1"),
        ("seed: 1\n", ["seed=99999999999999999999999"], "seed: Input should be less than"),
    ],
    ids=["bad-override", "two-errors", "yaml-syntax", "seed-range"],
)
def test_cli_config_errors_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    yaml_text: str,
    overrides: list[str],
    expected: str,
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    args = ["train", str(config), *(part for item in overrides for part in ("--set", item))]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err
