"""The commands of docs/synthesise.md run as written (training shortened to a few steps).

The generic guide runner (tests/test_docs.py) leaves this guide to this test: its training
commands need the repository's examples/ and are shortened here with extra ``--set`` options.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from medisynth.cli import main
from medisynth.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "synthesise.md"


def guide_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_guide_commands_run(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    quick = [
        f"data.path={tiny_npz}",
        "train.steps=3",
        "train.batch_size=8",
        "train.progress=false",
    ]
    tiny_model = {  # a tiny model of each family the guide trains
        "dcgan": ["model.g_channels=4", "model.d_channels=4", "model.latent_dim=8"],
        "style": [
            "model.latent_dim=8",
            "model.w_dim=8",
            "model.channel_base=64",
            "model.channel_max=8",
        ],
    }
    commands = guide_commands()
    assert any(c.startswith("medisynth generate") for c in commands)
    ran = 0
    for command in commands:
        words = shlex.split(command)
        if words[0] == "torchrun":  # launched by tests/training/test_distributed.py; check names
            assert words[words.index("-m") + 1] == "medisynth.cli"
            load_config(words[-1])
            continue
        assert words[0] == "medisynth", command
        args = words[1:]
        if args[0] == "train":
            settings = quick + tiny_model[load_config(args[1]).model.family]
            args += [part for item in settings for part in ("--set", item)]
        assert main(args) == 0, command
        ran += 1
    assert ran >= 4
    assert (tmp_path / "synthetic-png" / "labels.csv").is_file()
    assert (tmp_path / "synthetic-npz" / "synthetic.npz").is_file()
    assert len(list((tmp_path / "synthetic-nifti").glob("*/*.nii.gz"))) == 20
    assert len(list((tmp_path / "synthetic-style").glob("*/*.png"))) == 20
