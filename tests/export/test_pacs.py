"""Pushing to a real Orthanc on loopback: C-STORE and STOW-RS, and every failure made loud."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medisynth.cli import main
from medisynth.data.image import Image
from medisynth.export.dicom import export_dicom
from medisynth.export.orthanc import LocalOrthanc
from medisynth.export.pacs import PushError, parse_destination, push


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    rng = np.random.default_rng(3)
    volume = Image(
        rng.integers(-1000, 1500, size=(1, 12, 32, 32)).astype(np.float32),
        spacing=(2.0, 0.8, 0.8),
        affine=np.diag([2.0, 0.8, 0.8, 1.0]),
        modality="CT",
    )
    return export_dicom(volume, tmp_path_factory.mktemp("push") / "ct", model_id="push-test")


def _stored_instances(orthanc: LocalOrthanc) -> dict[str, pydicom.Dataset]:
    stored = {}
    for instance in orthanc.get("/instances"):
        ds = pydicom.dcmread(io.BytesIO(orthanc.get_bytes(f"/instances/{instance}/file")))
        stored[str(ds.SOPInstanceUID)] = ds
    return stored


def _check_arrived(orthanc: LocalOrthanc, files: list[Path]) -> None:
    stored = _stored_instances(orthanc)
    assert len(stored) == len(files)
    for file in files:
        sent = pydicom.dcmread(file)
        received = stored[str(sent.SOPInstanceUID)]
        assert received.SyntheticData == "YES"
        np.testing.assert_array_equal(received.pixel_array, sent.pixel_array)


def test_c_store_sends_every_instance_intact(orthanc: LocalOrthanc, series: list[Path]) -> None:
    orthanc.delete_all()
    result = push([series[0].parent], f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}")
    assert sorted(result.sent) == sorted(series) and not result.failed
    _check_arrived(orthanc, series)


def test_stow_rs_sends_every_instance_intact(orthanc: LocalOrthanc, series: list[Path]) -> None:
    orthanc.delete_all()
    url = f"dicomweb://127.0.0.1:{orthanc.http_port}/dicom-web"
    result = push(series, url, batch_size=5)
    assert len(result.sent) == len(series) and not result.failed
    _check_arrived(orthanc, series)


def test_wrong_called_ae_title_is_rejected(orthanc: LocalOrthanc, series: list[Path]) -> None:
    orthanc.delete_all()
    with pytest.raises(PushError, match="refused the association") as info:
        push(series, f"dicom://NOTORTHANC@127.0.0.1:{orthanc.dicom_port}")
    assert info.value.result is not None and info.value.result.sent == []
    assert orthanc.get("/instances") == []


def test_server_down_and_timeouts_fail_loudly(series: list[Path]) -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(PushError, match="cannot connect"):
        push(series[:1], f"dicom://PACS@127.0.0.1:{closed_port}", timeout=2)
    with pytest.raises(PushError, match="cannot reach"):
        push(series[:1], f"dicomweb://127.0.0.1:{closed_port}/dicom-web", timeout=2)

    # a server that accepts the connection and then says nothing
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True)
    thread.start()
    try:
        with pytest.raises(PushError):
            push(series[:1], f"dicom://PACS@127.0.0.1:{silent.getsockname()[1]}", timeout=1)
    finally:
        for conn in accepted:
            conn.close()
        silent.close()


@contextlib.contextmanager
def _stalling_scp(stall_from: int, stall_until: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """A pynetdicom storage SCP on loopback whose C-STORE calls ``stall_from`` to
    ``stall_until`` (counted over all associations, from 1) hang for 2 s before storing: a
    server that stops answering mid-series. Yields the port and the stored instances."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    stored: dict[str, Any] = {}
    calls = [0]

    def handle(event: Any) -> int:
        calls[0] += 1
        if stall_from <= calls[0] <= stall_until:
            time.sleep(2.0)
        stored[str(event.dataset.SOPInstanceUID)] = event.dataset
        return 0x0000

    ae = AE("STALLING")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
    )
    try:
        yield server.server_address[1], stored
    finally:
        server.shutdown()


def test_c_store_sends_again_what_a_stalled_server_left_unanswered(series: list[Path]) -> None:
    """The server stops answering at the fourth instance: the push resends the unanswered
    ones over a new association, and every instance arrives exactly once by UID."""
    with _stalling_scp(4, 4) as (port, stored):
        result = push(series, f"dicom://STALLING@127.0.0.1:{port}", timeout=0.5)
        time.sleep(2.0)  # let the stalled call finish
    assert sorted(result.sent) == sorted(series) and not result.failed
    assert set(stored) == {str(pydicom.dcmread(f).SOPInstanceUID) for f in series}


def test_c_store_gives_up_after_its_retries(series: list[Path]) -> None:
    """A server that stalls on every instance from the fourth on: after the retries the push
    fails, naming what was stored and what got no answer."""
    with _stalling_scp(4, 10**6) as (port, _), pytest.raises(PushError, match="FAILED") as info:
        push(series, f"dicom://STALLING@127.0.0.1:{port}", timeout=0.5)
    result = info.value.result
    assert result is not None and len(result.sent) == 3
    assert len(result.failed) == len(series) - 3
    assert all("no response" in why or "lost" in why for _, why in result.failed)


def test_real_patient_images_are_not_pushed(shared_data: Path, orthanc: LocalOrthanc) -> None:
    real = shared_data / "pydicom_samples" / "CT_small.dcm"
    with pytest.raises(PushError, match="Synthetic Data"):
        push([real], f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}")


def test_destination_parsing_errors() -> None:
    assert parse_destination("dicomweb://pacs:8042/dicom-web").path == "/dicom-web"
    for bad in (
        "http://x:1",
        "dicom://host:104",
        "dicom://AET@host",
        "dicom://" + "A" * 17 + "@h:1",
    ):
        with pytest.raises(PushError):
            parse_destination(bad)


def test_cli_push_reports_and_exits_non_zero_on_failure(
    orthanc: LocalOrthanc, series: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    orthanc.delete_all()
    target = f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    assert main(["push", str(series[0].parent), "--to", target]) == 0
    assert f"sent {len(series)} instance(s)" in capsys.readouterr().out
    bad = f"dicom://WRONG@127.0.0.1:{orthanc.dicom_port}"
    assert main(["push", str(series[0].parent), "--to", bad]) == 2
    assert "refused the association" in capsys.readouterr().err
