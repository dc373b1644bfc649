"""Instances per second pushing synthetic DICOM slices to a local Orthanc on loopback.

Exports N slices (a synthetic CT volume, 256x256 each, ~130 KB per file), then sends them to a
throwaway Orthanc (Debian ``orthanc``) three ways in the same run:

* medisynth C-STORE (pynetdicom, one association, TCP_NODELAY),
* the reference: DCMTK's ``storescu`` sending the same files (also one association),
* medisynth STOW-RS (DICOMweb, batches of 50).

Goal: at least 150 instances/s for C-STORE. Run: ``python benchmarks/pacs_push.py [N]``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medisynth.data.image import Image
from medisynth.export.dicom import export_dicom
from medisynth.export.orthanc import LocalOrthanc
from medisynth.export.pacs import push


def main(count: int = 1000) -> None:
    work = Path(tempfile.mkdtemp(prefix="medisynth-push-"))
    rng = np.random.default_rng(0)
    volume = Image(
        rng.integers(-1000, 2000, size=(1, 256, 256, count)).astype(np.float32),
        spacing=(0.7, 0.7, 1.0),
        affine=np.diag([0.7, 0.7, 1.0, 1.0]),  # RAS, k = superior: count axial slices
        modality="CT",
    )
    files = export_dicom(volume, work / "series", model_id="benchmark")
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    print(f"{len(files)} instances, {megabytes:.0f} MB, loopback Orthanc")
    rows = []
    with LocalOrthanc(work / "orthanc") as pacs:
        target = f"dicom://{pacs.aet}@127.0.0.1:{pacs.dicom_port}"
        result = push(files, target)
        rows.append(("medisynth C-STORE", len(result.sent), result.seconds))

        storescu = shutil.which("storescu", path="/usr/bin")
        if storescu:
            pacs.delete_all()
            start = time.perf_counter()
            subprocess.run(
                [storescu, "-aet", "MEDISYNTH", "-aec", pacs.aet, "127.0.0.1",
                 str(pacs.dicom_port), *map(str, files)],
                check=True,
            )  # fmt: skip
            elapsed = time.perf_counter() - start
            rows.append(("dcmtk storescu (reference)", len(pacs.get("/instances")), elapsed))

        pacs.delete_all()
        url = f"dicomweb://127.0.0.1:{pacs.http_port}/dicom-web"
        result = push(files, url)
        rows.append(("medisynth STOW-RS", len(result.sent), result.seconds))
        assert len(pacs.get("/instances")) == len(files)
    print(f"{'method':<28} {'stored':>7} {'seconds':>8} {'inst/s':>8}")
    for name, stored, seconds in rows:
        print(f"{name:<28} {stored:>7} {seconds:>8.2f} {stored / seconds:>8.0f}")
    ours, *rest = rows
    if rest and rest[0][0].startswith("dcmtk"):
        reference = rest[0]
        ratio = (ours[1] / ours[2]) / (reference[1] / reference[2])
        print(f"ratio medisynth C-STORE / storescu: x{ratio:.2f}")
    print(f"goal >= 150 inst/s for C-STORE: {'met' if ours[1] / ours[2] >= 150 else 'NOT met'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
