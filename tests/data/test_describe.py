"""``describe`` and ``medisynth info``: the facts a user needs, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medisynth.cli import main
from medisynth.data.describe import describe


def test_describes_a_dicom_series(shared_data: Path) -> None:
    d = describe(shared_data / "niivue_volumes" / "dicom_series")
    assert d.kind == "3D volume"
    assert d.fields["shape"] == [1, 3, 512, 512]
    assert d.fields["modality"] == "MR"
    assert d.fields["spacing (mm)"][1:] == pytest.approx([0.41015625, 0.41015625])


def test_describes_medmnist_label_counts(shared_data: Path) -> None:
    d = describe(shared_data / "breastmnist" / "breastmnist.npz")
    train = next(p for p in d.parts if p.path == "train")
    assert train.fields["label counts"] == {0: 147, 1: 399}


def test_info_prints_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for label in ("a", "b"):
        for i in range(2):
            (tmp_path / label).mkdir(exist_ok=True)
            PILImage.fromarray(np.full((4, 4), i * 1000, np.uint16)).save(
                tmp_path / label / f"{i}.png"
            )
    assert main(["info", str(tmp_path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["classes"] == {"a": 2, "b": 2}
    assert payload["stored type"] == "uint16"
    assert main(["info", str(tmp_path / "a" / "1.png")]) == 0
    assert "intensity range" in capsys.readouterr().out


def test_info_errors_are_one_clean_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "scan.nii.gz" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "missing.dcm")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_info_refuses_seg_cleanly(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(shared_data / "pydicom_samples" / "liver.dcm")]) == 2
    assert "not an image" in capsys.readouterr().err


def test_info_picks_one_series_of_several(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pydicom

    folder = shared_data / "pydicom_samples"
    uid = str(pydicom.dcmread(folder / "MR_small.dcm").SeriesInstanceUID)
    assert main(["info", str(folder), "--series", uid, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [1, 64, 64]


def test_usage_errors_exit_2_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 2
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "Missing argument" in err and "No such command" in err and "Traceback" not in err


def test_info_describes_a_generated_dicom_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from medisynth.config import RunConfig
    from medisynth.data.intensity import IntensityMap
    from medisynth.gans import get_family
    from medisynth.gans.base import DataInfo
    from medisynth.package import save_package

    data = DataInfo(
        channels=1,
        spatial_shape=(16, 16),
        class_names=["malignant", "benign"],
        intensity_map=IntensityMap(0.0, 255.0, clip=False, kind="range"),
        source_dtype="uint8",
    )
    cfg = RunConfig.from_dict({"model": {"g_channels": 4, "latent_dim": 8}})
    torch.manual_seed(0)
    family = get_family("dcgan").build(cfg.model, data, training=False)
    model = save_package(tmp_path / "model", family, cfg)
    out = tmp_path / "synthetic"  # OUT/dicom/IM00001.dcm ... + generation.json
    args = ["generate", str(model), "-f", "dicom", "--class-balance", "0:1,1:2", "-o", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["kind"] == "medisynth synthetic set" and payload["status"] == "complete"
    assert payload["format"] == "dicom" and payload["images"] == 3
    assert payload["classes"] == {"malignant": 1, "benign": 2}
    assert payload["model"] == json.loads((model / "model_card.json").read_text())["model_id"]
    first = payload["parts"][0]  # the first image, read as DICOM
    assert first["format"] == "dicom" and first["SyntheticData"] == "YES"
    assert main(["info", str(out)]) == 0
    assert "medisynth synthetic set" in capsys.readouterr().out


def test_info_shows_no_attribute_the_basic_profile_removes(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pydicom

    ds = pydicom.dcmread(shared_data / "pydicom_samples" / "CT_small.dcm")
    ds.PatientName = "DOE^JOHN"
    ds.SeriesDescription = "HEAD DOE JOHN"
    ds.StudyDescription = "JOHN DOE head"
    ds.ProtocolName = "JOHN protocol"
    ds.DerivationDescription = "JOHN DOE derived"
    ds.InstitutionName = "JOHN Clinic"
    ds.Manufacturer = "Acme Scanners"
    ds.save_as(tmp_path / "ct.dcm")
    for args in (["--json"], []):
        assert main(["info", str(tmp_path / "ct.dcm"), *args]) == 0
        out = capsys.readouterr().out
        assert "JOHN" not in out and "DOE" not in out
        assert "CT" in out and "Acme Scanners" in out  # technical attributes stay
    image_meta = describe(tmp_path / "ct.dcm").fields
    assert "SeriesDescription" not in image_meta and "Manufacturer" in image_meta


def test_kept_dicom_attributes_are_outside_the_basic_profile() -> None:
    from medisynth.data.dicom import BASIC_PROFILE_REMOVED, KEPT_ATTRIBUTES

    assert not set(KEPT_ATTRIBUTES) & set(BASIC_PROFILE_REMOVED)
    for keyword in (
        "SeriesDescription",
        "StudyDescription",
        "ProtocolName",
        "DerivationDescription",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyDate",
        "SeriesTime",
        "StudyInstanceUID",
        "SOPInstanceUID",
        "InstitutionName",
        "StationName",
        "DeviceSerialNumber",
        "AccessionNumber",
    ):
        assert keyword in BASIC_PROFILE_REMOVED, keyword
    import pydicom.datadict

    for keyword in (*KEPT_ATTRIBUTES, *BASIC_PROFILE_REMOVED):  # real DICOM keywords
        assert pydicom.datadict.tag_for_keyword(keyword) is not None, keyword
