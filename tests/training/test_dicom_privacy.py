"""Privacy on the way in: a model trained on DICOM with patient data stores none of it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medisynth.config import RunConfig
from medisynth.training.engine import train

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


def write_phi_series(shared_data: Path, folder: Path, slices: int = 12) -> list[str]:
    """A CT series built from pydicom's CT_small, every slice carrying the PHI above."""
    template = pydicom.dcmread(shared_data / "pydicom_samples" / "CT_small.dcm")
    folder.mkdir()
    series_uid, study_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    for k in range(slices):
        ds = copy.deepcopy(template)
        for keyword, value in PHI.items():
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
