"""Privacy on the way in: a model trained on DICOM with patient data stores none of it."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import struct
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from pydicom.uid import generate_uid

from medisynth.config import RunConfig
from medisynth.training.engine import Trainer, train

PHI = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "MRN-8675309",
    "PatientBirthDate": "19610704",
    "OtherPatientIDs": "ALT-4242-77",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "AccessionNumber": "ACC99887766",
    "StudyID": "STUDY-31337",
    "PatientAddress": "12 Imaginary Lane, Springfield",
}


def write_phi_series(
    shared_data: Path, folder: Path, slices: int = 12, phi: dict[str, str] | None = None
) -> list[str]:
    """A CT series built from pydicom's CT_small, every slice carrying ``phi`` (default: the PHI
    above)."""
    template = pydicom.dcmread(shared_data / "pydicom_samples" / "CT_small.dcm")
    folder.mkdir()
    series_uid, study_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    for k in range(slices):
        ds = copy.deepcopy(template)
        for keyword, value in (PHI if phi is None else phi).items():
            setattr(ds, keyword, value)
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, study_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        orientation = np.array(template.ImageOrientationPatient, float).reshape(2, 3)
        position = np.array(template.ImagePositionPatient, float) + 2.0 * k * np.cross(*orientation)
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        pixels = template.pixel_array.astype(np.int32) + rng.integers(-40, 40, (128, 128))
        ds.PixelData = np.clip(pixels, -1024, 3000).astype(np.int16).tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm")
    return [series_uid, study_uid]


def test_model_package_holds_no_patient_identifiers(shared_data: Path, tmp_path: Path) -> None:
    uids = write_phi_series(shared_data, tmp_path / "series")
    config = RunConfig.from_dict(
        {
            "seed": 1,
            "data": {
                "format": "slices",
                "path": str(tmp_path / "series"),
                "axis": 0,
                "min_foreground": 0.0,
                "image_size": 16,
            },
            "model": {"g_channels": 4, "d_channels": 4, "latent_dim": 8},
            "train": {
                "steps": 2,
                "batch_size": 4,
                "precision": "fp32",
                "progress": False,
                "tensorboard": False,
                "sample_every": 0,
                "checkpoint_every": 0,
                "out_dir": str(tmp_path / "run"),
            },
        }
    )
    result = train(config)
    assert result.package is not None
    package = Path(result.package)
    files = [p for p in package.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"weights.safetensors", "model_card.json", "config.yaml"}
    needles = [*PHI.values(), *uids, *(v.split("^")[0] for v in PHI.values() if "^" in v)]
    for file in files:
        content = file.read_bytes()
        for needle in needles:
            assert needle.encode() not in content, f"{needle!r} found in {file.name}"
    card = (package / "model_card.json").read_text()
    assert '"modality": "CT"' in card  # what the data were is kept; who they were is not


@pytest.mark.parametrize("missing", ["no_such_series"])
def test_slices_of_a_missing_volume_is_a_clear_error(tmp_path: Path, missing: str) -> None:
    from medisynth.errors import MedisynthError

    config = RunConfig.from_dict(
        {"data": {"format": "slices", "path": str(tmp_path / missing)}, "train": {"steps": 1}}
    )
    with pytest.raises(MedisynthError, match=missing):
        train(config)


# ----------------------------------------------------------------------------- a whole run
#: a patient whose name and birth date also name the folder the series is stored in
DOE = {
    "PatientName": "DOE^JOHN",
    "PatientID": "JOHN-0042",
    "PatientBirthDate": "19600101",
    "SeriesDescription": "HEAD DOE JOHN 19600101",
    "StudyDescription": "CT HEAD (JOHN DOE)",
    "ProtocolName": "DOE_JOHN protocol",
    "InstitutionName": "JOHN DOE Clinic",
}


def _metadata_parts(path: Path) -> list[bytes]:
    """What of a file is not raw numbers: a short name like "DOE" can turn up by chance in ~100
    KB of weights, so binaries are searched for it outside their tensor and pixel data only
    (the longer needles are searched in every byte)."""
    data = path.read_bytes()
    if zipfile.is_zipfile(path):  # torch.save: pickled structure + one member per tensor
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if "/data/" not in n]
            return [n.encode() for n in archive.namelist()] + [archive.read(n) for n in members]
    if path.suffix == ".safetensors":
        (length,) = struct.unpack("<Q", data[:8])
        return [data[8 : 8 + length]]
    if path.suffix == ".png":
        chunks, stream = [], io.BytesIO(data[8:])
        while header := stream.read(8):
            size, kind = struct.unpack(">I4s", header)
            body = stream.read(size + 4)
            if kind != b"IDAT":
                chunks.append(kind + body)
        return chunks
    return [data]


def _phi_run_config(data: Path, out: Path, **train: object) -> RunConfig:
    return RunConfig.from_dict(
        {
            "seed": 1,
            "data": {
                "format": "slices",
                "path": str(data),
                "axis": 0,
                "min_foreground": 0.0,
                "image_size": 16,
            },
            "model": {"g_channels": 4, "d_channels": 4, "latent_dim": 8},
            "train": {
                "steps": 3,
                "batch_size": 4,
                "precision": "fp32",
                "progress": False,
                "sample_every": 2,
                "checkpoint_every": 2,
                "log_every": 1,
                "out_dir": str(out),
                **train,
            },
        }
    )


def test_no_file_of_a_run_names_the_patient_or_a_path(shared_data: Path, tmp_path: Path) -> None:
    """Data in a folder named after the patient, PHI in every slice and in the free-text
    descriptions: nothing the run writes (checkpoint, package, configs, card, metrics, summary,
    sample grids) holds the name, the birth date, the UIDs or the user's paths."""
    series = tmp_path / "DOE_JOHN_19600101"
    uids = write_phi_series(shared_data, series, phi=DOE)
    out = tmp_path / "runs" / "first"
    first = Trainer(_phi_run_config(series, out), callbacks=[_stop_at(2)]).fit()
    assert first.status == "interrupted"
    result = Trainer(_phi_run_config(series, out)).fit(resume=True)  # a resumed run writes too
    assert result.status == "completed" and result.package is not None
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {str(p.relative_to(out)) for p in files}
    assert {"checkpoints/last.pt", "model/weights.safetensors", "model/config.yaml"} <= names
    assert {"config.yaml", "metrics.jsonl", "train_summary.json", "model/model_card.md"} <= names
    assert any(n.startswith("samples/") for n in names)
    anywhere = ["JOHN", "19600101", str(tmp_path), tmp_path.name, *uids]
    for file in files:
        content = file.read_bytes()
        for needle in anywhere:
            assert needle.encode() not in content, f"{needle!r} found in {file}"
        for part in _metadata_parts(file):
            assert b"DOE" not in part, f"'DOE' found in {file}"
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert card["data"]["modality"] == "CT" and card["data"]["fingerprint"]
    assert "12 file" in card["data"]["source"]  # a file count instead of the path


def _stop_at(step: int):  # type: ignore[no-untyped-def]
    def stop(trainer: Trainer, at: int, losses: dict[str, float]) -> None:
        if at == step:
            os.kill(os.getpid(), signal.SIGINT)  # the real signal path: checkpoint, then stop

    return stop


def test_the_run_config_keeps_the_paths_only_when_asked(shared_data: Path, tmp_path: Path) -> None:
    series = tmp_path / "DOE_JOHN_19600101"
    write_phi_series(shared_data, series, slices=8, phi=DOE)
    out = tmp_path / "run"
    train(_phi_run_config(series, out, record_paths=True, sample_every=0))
    kept = yaml.safe_load((out / "config.yaml").read_text())
    assert kept["data"]["path"] == str(series) and kept["train"]["out_dir"] == str(out)
    for file in out.rglob("*"):
        if file.is_file() and file != out / "config.yaml":
            assert b"JOHN" not in file.read_bytes(), f"the data path is in {file}"


def test_a_medmnist_run_records_no_path(tiny_run, tiny_npz: Path) -> None:  # type: ignore[no-untyped-def]
    result = Trainer(tiny_run(steps=2, checkpoint_every=2)).fit()
    out = Path(result.out_dir)
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert card["data"]["source"].startswith("MedMNIST")
    assert card["data"]["fingerprint"]
    for file in [p for p in out.rglob("*") if p.is_file()]:
        content = file.read_bytes()
        for needle in (str(tiny_npz.parent), tiny_npz.name):
            assert needle.encode() not in content, f"{needle!r} found in {file}"
