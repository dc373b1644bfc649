"""The guides in docs/ run as written: ``python`` blocks are executed in order, and each line
of a ``bash`` block that starts with ``medisynth`` is run through the CLI (exit status 0).
``text`` blocks are illustrations and are not run."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from medisynth.cli import main

DOCS = sorted((Path(__file__).resolve().parents[1] / "docs").glob("*.md"))
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("guide", DOCS, ids=[d.name for d in DOCS])
def test_guide_runs(
    guide: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_test = re.search(r"<!-- tested by (tests/\S+) -->", guide.read_text())
    if own_test:
        pytest.skip(f"{guide.name} is run by {own_test.group(1)}")
    monkeypatch.setenv("MEDISYNTH_DATA", str(shared_data))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    ran = 0
    for language, body in BLOCK.findall(guide.read_text()):
        if language == "python":
            exec(compile(body, f"{guide.name}", "exec"), namespace)  # noqa: S102 - our own docs
            ran += 1
        elif language == "bash":
            for line in body.splitlines():
                if line.startswith("medisynth "):
                    args = shlex.split(os.path.expandvars(line))[1:]
                    assert main(args) == 0, f"{guide.name}: {line}"
                    ran += 1
    assert ran > 0 or "no runnable" in guide.read_text()
