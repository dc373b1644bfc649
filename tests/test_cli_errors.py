"""Bad arguments to every command: exit status 2 and one line ``error: ...``, never a traceback.

Each row of :data:`CASES` is a command line a careless user might type. ``{name}`` placeholders
are filled with the paths of the fixtures below (``{out}`` is a fresh folder per row); the
message must contain the row's ``expect`` text (placeholders filled too). To cover a new
mistake, add a row; add a fixture path to :func:`paths` when the row needs one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from medisynth.apply.generate import generate
from medisynth.cli import main
from medisynth.config import RunConfig
from medisynth.data.image import Image
from medisynth.data.intensity import IntensityMap
from medisynth.export.dicom import export_dicom
from medisynth.export.nifti import write_nifti
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo
from medisynth.package import save_package

HAS_FIFO = hasattr(os, "mkfifo")
HAS_PROC = sys.platform.startswith("linux") and Path("/proc/self").is_dir()
#: a path no one can create: /proc refuses new entries, even to root
UNWRITABLE = "/proc/medisynth-no-such-place"


@dataclass(frozen=True)
class Case:
    """One bad command line and a text its error message must contain."""

    id: str
    argv: tuple[str, ...]
    expect: str
    #: prepares the row's ``{out}`` folder before the command runs
    setup: Callable[[Path], None] | None = None
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())


def _corrupt_generated_set(out: Path) -> None:
    """A folder that looks like an earlier generated set whose record is damaged."""
    folder = out / "set"
    (folder / "benign").mkdir(parents=True)
    (folder / "benign" / "synthetic_000001.png").write_bytes(b"not really a png")
    (folder / "generation.json").write_text("{damaged", encoding="utf-8")


needs_fifo = pytest.mark.skipif(not HAS_FIFO, reason="no named pipes on this system")
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc")
PACS = "dicom://PACS@127.0.0.1:1"
SET = "{npz}:train"

CASES = [
    # ---- translate / enhance
    Case(
        "translate-batch-size-0",
        ("translate", "{pix2pix}", "{volume}", "-o", "{out}/t.nii.gz", "--batch-size", "0"),
        "batch size",
    ),
    Case(
        "enhance-batch-size-negative",
        ("enhance", "{srgan}", "{volume}", "-o", "{out}/e.nii.gz", "--batch-size", "-1"),
        "batch size",
    ),
    Case(
        "translate-output-under-a-file",
        ("translate", "{pix2pix}", "{volume}", "-o", "{file}/t.nii.gz"),
        "{file}",
    ),
    Case(
        "translate-output-unwritable",
        ("translate", "{pix2pix}", "{volume}", "-o", f"{UNWRITABLE}.nii.gz"),
        f"{UNWRITABLE}.nii.gz",
        marks=(needs_proc,),
    ),
    # ---- usage (the command-line parser's own errors)
    Case("usage-missing-argument", ("generate",), "Missing argument 'model'"),
    Case("usage-unknown-option", ("train", "--bogus", "x.yaml"), "No such option: --bogus"),
    Case("usage-not-a-number", ("generate", "{dcgan}", "-n", "many"), "medisynth generate --help"),
    Case("usage-unknown-command", ("trian",), "No such command 'trian'"),
    # ---- push
    Case("push-negative-timeout", ("push", "{dicom}", "--to", PACS, "--timeout", "-1"), "timeout"),
    Case(
        "push-calling-aet-too-long",
        ("push", "{dicom}", "--to", PACS, "--aet", "A" * 17),
        "calling AE title",
    ),
    Case("push-calling-aet-empty", ("push", "{dicom}", "--to", PACS, "--aet", ""), "empty"),
    Case(
        "push-called-aet-too-long",
        ("push", "{dicom}", "--to", f"dicom://{'A' * 17}@127.0.0.1:1"),
        "called AE title",
    ),
    Case(
        "push-called-aet-backslash",
        ("push", "{dicom}", "--to", "dicom://PA\\CS@127.0.0.1:1"),
        "called AE title",
    ),
    Case(
        "push-a-pipe", ("push", "{fifo}", "--to", PACS), "not a file or folder", marks=(needs_fifo,)
    ),
    # ---- export
    Case(
        "export-a-real-volume",
        ("export", "{volume}", "-o", "{out}/dicom", "--model-id", "m", "--modality", "MR"),
        "not part of a set that medisynth generated",
    ),
    Case(
        "export-output-is-a-file",
        ("export", "{generated}", "-o", "{file}"),
        "not a folder",
    ),
    Case(
        "export-output-unwritable",
        ("export", "{generated}", "-o", UNWRITABLE),
        "cannot create the output folder",
        marks=(needs_proc,),
    ),
    # ---- generate
    Case(
        "generate-output-unwritable",
        ("generate", "{dcgan}", "-n", "2", "-o", UNWRITABLE),
        UNWRITABLE,
        marks=(needs_proc,),
    ),
    Case(
        "generate-output-under-a-file",
        ("generate", "{dcgan}", "-n", "2", "-o", "{file}/set"),
        "{file}",
    ),
    Case(
        "generate-card-without-data",
        ("generate", "{no_data}", "-n", "2", "-o", "{out}/set"),
        "no 'data' object",
    ),
    Case(
        "generate-card-not-an-object",
        ("generate", "{card_list}", "-n", "2", "-o", "{out}/set"),
        "not a JSON object",
    ),
    Case(
        "generate-intensity-map-not-a-number",
        ("generate", "{text_map}", "-n", "2", "-o", "{out}/set"),
        "intensity map 'low' must be a number",
    ),
    Case(
        "generate-overwrite-damaged-record",
        ("generate", "{dcgan}", "-n", "2", "-o", "{out}/set", "--overwrite"),
        "generation.json",
        setup=_corrupt_generated_set,
    ),
    # ---- card
    Case("card-without-data", ("card", "{no_data}"), "no 'data' object"),
    Case("card-damaged-json", ("card", "{bad_json}"), "damaged model card"),
    Case(
        "card-metrics-a-list",
        ("card", "{dcgan}", "--add-metrics", "{json_list}"),
        "not a `medisynth validate` report",
    ),
    Case(
        "card-metrics-no-metrics",
        ("card", "{dcgan}", "--add-metrics", "{json_empty}"),
        "not a `medisynth validate` report",
    ),
    Case(
        "card-metrics-a-pipe",
        ("card", "{dcgan}", "--add-metrics", "{fifo}"),
        "not a file",
        marks=(needs_fifo,),
    ),
    # ---- info
    Case("info-a-pipe", ("info", "{fifo}"), "not a regular file", marks=(needs_fifo,)),
    # ---- validate
    Case(
        "validate-no-metrics",
        ("validate", "--real", SET, "--synthetic", SET, "-o", "{out}/v", "--metrics", ","),
        "no metrics selected",
    ),
    Case(
        "validate-unknown-extractor",
        (
            "validate",
            "--real",
            SET,
            "--synthetic",
            SET,
            "-o",
            "{out}/v",
            "--metrics",
            "diversity",
            "--extractor",
            "pixel",
        ),
        "unknown feature extractor",
    ),  # fmt: skip
    Case(
        "validate-output-is-a-file",
        (
            "validate",
            "--real",
            SET,
            "--synthetic",
            SET,
            "-o",
            "{file}",
            "--metrics",
            "diversity",
            "--extractor",
            "pixels",
        ),
        "not a folder",
    ),  # fmt: skip
    # ---- train
    Case("train-config-is-a-folder", ("train", "{out}"), "not a file"),
    Case("train-config-is-a-pipe", ("train", "{fifo}"), "not a file", marks=(needs_fifo,)),
    Case("train-config-bad-yaml", ("train", "{bad_yaml}"), "not valid YAML"),
    Case(
        "train-several-bad-values",
        ("train", "{config}", "--set", "train.steps=-5", "--set", "model.g_channels=x"),
        "train.steps",
    ),
    # ---- demo
    Case("demo-output-is-a-file", ("demo", "--out", "{file}"), "not a folder"),
    Case("demo-negative-minutes", ("demo", "--out", "{out}/d", "--minutes", "-1"), "--minutes"),
    # ---- study
    Case(
        "study-create-too-few-images",
        ("study", "create", "--real", SET, "--synthetic", SET, "-n", "40", "-o", "{out}/s"),
        "the study needs 20",
    ),
    Case(
        "study-create-output-is-a-file",
        ("study", "create", "--real", SET, "--synthetic", SET, "-n", "4", "-o", "{file}"),
        "already exists",
    ),
    Case("study-invite-no-role", ("study", "invite", "{out}"), "--reader NAME or --admin"),
    Case("study-invite-not-a-study", ("study", "invite", "{out}", "--admin"), "not a reader study"),
    Case("study-serve-not-a-study", ("study", "serve", "{out}"), "not a reader study"),
    Case("study-analyze-not-a-study", ("study", "analyze", "{file}", "-o", "{out}"), "no study"),
]


# --------------------------------------------------------------------------- fixtures
def _dcgan(folder: Path) -> Path:
    data = DataInfo(
        channels=1,
        spatial_shape=(16, 16),
        class_names=["malignant", "benign"],
        class_counts={0: 10, 1: 10},
        intensity_map=IntensityMap(0.0, 255.0, clip=False, kind="range"),
        source_dtype="uint8",
    )
    cfg = RunConfig.from_dict({"model": {"g_channels": 4, "latent_dim": 8}})
    torch.manual_seed(0)
    return save_package(folder, get_family("dcgan").build(cfg.model, data, training=False), cfg)


def _pix2pix(folder: Path) -> Path:
    model = {"family": "pix2pix", "g_channels": 4, "g_depth": 2, "d_channels": 4, "d_layers": 2}
    cfg = RunConfig.from_dict({"model": model, "data": {"format": "paired", "axis": 2}})
    data = DataInfo(
        channels=1,
        spatial_shape=(16, 16),
        intensity_map=IntensityMap(1000.0, 3000.0, kind="percentile", modality="MR"),
        source_intensity_map=IntensityMap(0.0, 100.0, kind="window", modality="MR"),
        source_channels=1,
        source_dtype="float32",
    )
    torch.manual_seed(0)
    return save_package(folder, get_family("pix2pix").build(cfg.model, data, training=False), cfg)


def _srgan(folder: Path) -> Path:
    model = {"family": "srgan", "g_channels": 4, "d_channels": 4, "d_layers": 1, "scale": 2}
    cfg = RunConfig.from_dict({"model": {**model, "n_blocks": 1}, "data": {"axis": 2}})
    data = DataInfo(
        channels=1,
        spatial_shape=(16, 16),
        intensity_map=IntensityMap(0.0, 100.0, kind="window", modality="MR"),
        source_dtype="uint8",
    )
    torch.manual_seed(0)
    return save_package(folder, get_family("srgan").build(cfg.model, data, training=False), cfg)


def _edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(edit(data)), encoding="utf-8")


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every file a row may name: tiny packages (good and damaged), inputs, odd files."""
    root = tmp_path_factory.mktemp("cli-errors")
    found: dict[str, Path] = {"dcgan": _dcgan(root / "dcgan")}
    found["pix2pix"], found["srgan"] = _pix2pix(root / "pix2pix"), _srgan(root / "srgan")
    for name in ("no_data", "card_list", "bad_json", "text_map"):
        found[name] = Path(shutil.copytree(found["dcgan"], root / name))
    _edit_json(
        found["no_data"] / "model_card.json",
        lambda card: {k: v for k, v in card.items() if k != "data"},
    )
    _edit_json(found["card_list"] / "model_card.json", lambda card: [card])
    (found["bad_json"] / "model_card.json").write_text("{damaged", encoding="utf-8")
    _edit_json(found["text_map"] / "intensity_map.json", lambda m: {**m, "low": "zero"})

    found["generated"] = root / "generated"
    generate(found["dcgan"], 2, found["generated"], fmt="png")
    rng = np.random.default_rng(0)
    found["volume"] = root / "t1.nii.gz"
    write_nifti(found["volume"], (rng.random((1, 16, 12, 4)) * 100).astype(np.float32))
    image = Image(rng.integers(0, 255, size=(1, 8, 8)).astype(np.float32), spacing=(1.0, 1.0))
    found["dicom"] = export_dicom(image, root / "dicom", model_id="cli-errors")[0]
    images = rng.integers(0, 255, size=(6, 16, 16)).astype(np.uint8)
    found["npz"] = root / "set.npz"
    np.savez(found["npz"], train_images=images, train_labels=np.zeros((6, 1), np.uint8))
    found["config"] = root / "run.yaml"
    found["config"].write_text("train:\n  steps: 5\n", encoding="utf-8")
    found["bad_yaml"] = root / "bad.yaml"
    found["bad_yaml"].write_text("train: {steps: [\n", encoding="utf-8")
    found["file"] = root / "notes.txt"
    found["file"].write_text("a plain file\n", encoding="utf-8")
    found["json_list"] = root / "list.json"
    found["json_list"].write_text("[1, 2]\n", encoding="utf-8")
    found["json_empty"] = root / "empty.json"
    found["json_empty"].write_text("{}\n", encoding="utf-8")
    if HAS_FIFO:
        found["fifo"] = root / "stream"
        os.mkfifo(found["fifo"])
    return found


class _Hung(Exception):
    """The command waited on something (e.g. a named pipe) instead of refusing it."""


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging forever (POSIX: SIGALRM interrupts a blocked open())."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hung(signum: int, frame: object) -> None:
        raise _Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_arguments_give_one_error_line_and_exit_status_2(
    case: Case, paths: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {key: str(value) for key, value in paths.items()} | {"out": str(tmp_path)}
    if case.setup is not None:
        case.setup(tmp_path)
    argv = [arg.format(**names) for arg in case.argv]
    with _deadline(60):
        status = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert case.expect.format(**names) in lines[0]


# --------------------------------------------------------------------------- the boundary
def test_running_out_of_memory_is_an_error_not_a_bug(
    paths: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import medisynth.apply.generate

    def too_big(*args: object, **kwargs: object) -> None:
        raise MemoryError("Unable to allocate 745. GiB")

    monkeypatch.setattr(medisynth.apply.generate, "generate", too_big)
    assert main(["generate", str(paths["dcgan"]), "-n", "10", "-o", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not enough memory")


def test_an_unexpected_exception_stays_an_internal_error(
    paths: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Exit status 3 keeps meaning 'a bug': an exception no user can cause, or an OSError that
    names no path."""
    import medisynth.apply.generate

    for error in (RuntimeError("boom"), OSError("socket trouble")):

        def broken(*args: object, error: Exception = error, **kwargs: object) -> None:
            raise error

        monkeypatch.setattr(medisynth.apply.generate, "generate", broken)
        assert main(["generate", str(paths["dcgan"]), "-n", "1", "-o", str(tmp_path / "o")]) == 3
        assert "internal error" in capsys.readouterr().err


def test_the_python_api_refuses_the_same_options(paths: dict[str, Path], tmp_path: Path) -> None:
    """Option checks live in the API, so scripts get the same MedisynthError as the CLI."""
    from medisynth.apply.enhance import enhance
    from medisynth.apply.translate import translate
    from medisynth.data.intensity import intensity_map_from_dict
    from medisynth.errors import ConfigError, ReadError
    from medisynth.export.pacs import PushError, push
    from medisynth.package import attach_metrics, load_package
    from medisynth.validate.protocol import ValidateOptions

    volume, out = paths["volume"], tmp_path / "o.nii.gz"
    with pytest.raises(ConfigError, match="batch size"):
        translate(paths["pix2pix"], volume, out, batch_size=0)
    with pytest.raises(ConfigError, match="batch size"):
        enhance(paths["srgan"], volume, out, batch_size=-1)
    with pytest.raises(PushError, match="timeout"):
        push([paths["dicom"]], PACS, timeout=-1)
    with pytest.raises(PushError, match="calling AE title"):
        push([paths["dicom"]], PACS, calling_aet="A" * 17)
    with pytest.raises(PushError, match="batch_size"):
        push([paths["dicom"]], "dicomweb://127.0.0.1:1/dicom-web", batch_size=0)
    with pytest.raises(ConfigError, match="no metrics selected"):
        ValidateOptions(metrics=()).check()
    with pytest.raises(ConfigError, match="not a `medisynth validate` report"):
        attach_metrics(paths["dcgan"], [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'high' must be a number"):
        intensity_map_from_dict({"low": 0.0, "high": "255"})
    for damaged in ("no_data", "card_list", "bad_json", "text_map"):
        with pytest.raises(ReadError):
            load_package(paths[damaged])
    assert not out.exists()
