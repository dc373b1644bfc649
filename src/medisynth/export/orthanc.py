"""A throwaway Orthanc PACS on loopback, for trying ``medisynth push`` and for tests.

Needs the Debian package ``orthanc`` (``orthanc-dicomweb`` for STOW-RS). The server listens on
127.0.0.1 only, stores into its own folder, checks the called AE title, and stops on exit.

>>> with LocalOrthanc(workdir) as pacs:                     # doctest: +SKIP
...     push(files, f"dicom://{pacs.aet}@127.0.0.1:{pacs.dicom_port}")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from medisynth.errors import MedisynthError

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def orthanc_executable() -> str | None:
    """Path of the Orthanc server, or None when it is not installed."""
    found = shutil.which("Orthanc")
    if found:
        return found
    return "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalOrthanc:
    """Start Orthanc in ``workdir`` on free loopback ports; a context manager."""

    def __init__(self, workdir: str | os.PathLike[str], aet: str = "ORTHANC") -> None:
        executable = orthanc_executable()
        if executable is None:
            raise MedisynthError("Orthanc is not installed: apt-get install orthanc")
        self.executable = executable
        self.workdir = Path(workdir)
        self.aet = aet
        self.dicom_port = _free_port()
        self.http_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str) -> Any:
        """GET a REST path and decode its JSON."""
        return json.loads(self.get_bytes(path))

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.rest + path, timeout=10) as response:
            return bytes(response.read())

    def delete_all(self) -> None:
        """Remove every stored instance."""
        for instance in self.get("/instances"):
            request = urllib.request.Request(f"{self.rest}/instances/{instance}", method="DELETE")
            urllib.request.urlopen(request, timeout=10).close()

    def start(self, timeout: float = 30.0) -> LocalOrthanc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "medisynth-local",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(config))
        log = open(self.workdir / "orthanc.log", "wb")  # noqa: SIM115 - lives with the server
        env = {**os.environ, "TCP_NODELAY": "1"}  # or every C-STORE response waits ~88 ms
        self.process = subprocess.Popen(
            [self.executable, str(config_path)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get("/system")
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = (self.workdir / "orthanc.log").read_text(errors="replace")[-2000:]
                    raise MedisynthError(f"Orthanc did not start:\n{tail}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> LocalOrthanc:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
