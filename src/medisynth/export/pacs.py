"""Push exported DICOM to a PACS: DICOM C-STORE (pynetdicom) or DICOMweb STOW-RS.

Destinations are URLs:

* ``dicom://AET@host:port``: C-STORE over one association for all instances, TCP_NODELAY on;
  instances left without an answer go again over a new association (twice at most).
* ``dicomweb://host:port/dicom-web`` (``dicomwebs://`` for HTTPS): STOW-RS to ``.../studies``,
  in batches.

Only instances the server acknowledged count as sent; anything else is listed as failed with the
reason, and :func:`push` raises :class:`PushError` when any instance failed or the server could
not be reached, refused the association, or timed out. By default only objects flagged
Synthetic Data = YES are pushed; nothing of a generated set that ``medisynth generate`` did not
finish writing is.

>>> parse_destination("dicom://ORTHANC@127.0.0.1:4242")
Destination(scheme='dicom', host='127.0.0.1', port=4242, called_aet='ORTHANC', path='')
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from medisynth.errors import MedisynthError

#: C-STORE statuses that mean the instance was stored (success and the storage warnings).
_STORED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}


class PushError(MedisynthError):
    """Sending to the PACS failed, wholly or for some instances (see ``.result``)."""

    def __init__(self, message: str, result: PushResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Destination:
    """A parsed push destination."""

    scheme: str
    host: str
    port: int
    called_aet: str = ""
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "dicom":
            return f"dicom://{self.called_aet}@{self.host}:{self.port}"
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


@dataclass
class PushResult:
    """What happened to each instance."""

    destination: str
    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def instances_per_second(self) -> float:
        return len(self.sent) / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = (
            f"sent {len(self.sent)} instance(s) to {self.destination} in {self.seconds:.2f} s "
            f"({self.instances_per_second:.0f}/s)"
        )
        if self.failed:
            text += (
                f"; {len(self.failed)} FAILED, e.g. {self.failed[0][0].name}: {self.failed[0][1]}"
            )
        return text


def parse_destination(url: str) -> Destination:
    """Parse ``dicom://AET@host:port`` or ``dicomweb[s]://host:port/path``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("dicom", "dicomweb", "dicomwebs"):
        raise PushError(
            f"unknown destination {url!r}: use dicom://AET@host:port or "
            "dicomweb://host:port/dicom-web"
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise PushError(f"destination {url!r} needs a host and a port")
    if scheme == "dicom":
        aet = parts.username or ""
        if not aet or len(aet) > 16:
            raise PushError(
                f"destination {url!r} needs the called AE title (1-16 characters) before '@'"
            )
        check_ae_title(aet, "the called AE title (before '@' in the destination)")
        return Destination("dicom", parts.hostname, port, called_aet=aet)
    return Destination(scheme, parts.hostname, port, path=parts.path.rstrip("/"))


def check_ae_title(aet: str, what: str = "the AE title") -> None:
    """Refuse an AE title DICOM does not allow: empty or blank, over 16 characters, not ASCII,
    control characters or a backslash."""
    problem = ""
    if not aet.strip():
        problem = "is empty"
    elif len(aet) > 16:
        problem = f"has {len(aet)} characters (at most 16)"
    elif not aet.isascii() or "\\" in aet or any(not c.isprintable() for c in aet):
        problem = "may only hold printable ASCII characters, without a backslash"
    if problem:
        raise PushError(f"{what} {aet!r} {problem}; AE titles are 1-16 characters, e.g. MEDISYNTH")


def dicom_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The DICOM files among ``paths`` (folders are searched recursively), sorted.

    Raises:
        PushError: a path does not exist, or there are no DICOM files.
        IncompleteSetError: a path is (in) a generated set whose writing did not finish.
    """
    from medisynth.data.dicom import is_dicom_file
    from medisynth.output_set import check_complete

    found: list[Path] = []
    for item in paths:
        path = Path(item)
        check_complete(path)  # never push part of a set whose writing was interrupted
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_dicom_file(p))
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise PushError(f"{path}: not a file or folder (a pipe, socket or device)")
        else:
            raise PushError(f"{path}: no such file or folder")
    if not found:
        raise PushError("no DICOM files to send")
    return found


def _read_for_sending(path: Path, allow_real: bool) -> Any:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as err:
        raise PushError(f"{path}: not a readable DICOM file ({err})") from err
    if not allow_real and str(ds.get("SyntheticData", "")).upper() != "YES":
        raise PushError(
            f"{path}: not flagged Synthetic Data = YES; only DICOM that medisynth generated is "
            "sent, and real images are never relabelled as synthetic (to send real images as "
            "they are, to a PACS cleared for them, pass allow_real=True / --allow-real)"
        )
    return ds


def push(
    paths: Sequence[str | os.PathLike[str]],
    destination: str,
    calling_aet: str = "MEDISYNTH",
    timeout: float = 30.0,
    allow_real: bool = False,
    batch_size: int = 50,
) -> PushResult:
    """Send DICOM files (or folders of them) to a PACS.

    Raises:
        PushError: a destination, AE title, timeout or batch size DICOM or the network cannot
            take; the server cannot be reached, refuses the association or the request, times
            out, or does not acknowledge every instance; ``err.result`` lists what was stored.
    """
    target = parse_destination(destination)
    if target.scheme == "dicom":
        check_ae_title(calling_aet, "the calling AE title (--aet)")
    if not (isinstance(timeout, Real) and math.isfinite(timeout) and timeout > 0):
        raise PushError(f"the timeout (--timeout) must be a number of seconds > 0, got {timeout}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise PushError(f"batch_size must be a whole number >= 1, got {batch_size}")
    files = dicom_files(paths)
    datasets = [_read_for_sending(p, allow_real) for p in files]
    start = time.perf_counter()
    if target.scheme == "dicom":
        result = _c_store(target, files, datasets, calling_aet, timeout)
    else:
        result = _stow_rs(target, files, datasets, timeout, batch_size)
    result.seconds = time.perf_counter() - start
    if result.failed:
        raise PushError(result.summary(), result)
    return result


#: new associations tried for instances that got no answer (C-STORE is idempotent per SOP
#: Instance UID, so sending one again cannot duplicate it)
C_STORE_RETRIES = 2


def _c_store(
    target: Destination, files: list[Path], datasets: list[Any], calling_aet: str, timeout: float
) -> PushResult:
    """Send over one association; instances left without an answer (a timeout, a lost
    association) go again over a new one, up to :data:`C_STORE_RETRIES` times. An instance the
    server answered with a failure status is not sent again."""
    ae = _application_entity(datasets, calling_aet, timeout)
    try:  # pynetdicom reports a refused connection as an abort: tell them apart first
        socket.create_connection((target.host, target.port), timeout=timeout).close()
    except OSError as err:
        reason = f"cannot connect to {target} ({err.strerror or err}): is the server up?"
        failed = PushResult(str(target), failed=[(f, reason) for f in files])
        raise PushError(reason, failed) from err
    result = PushResult(str(target))
    pending = [(path, ds, "") for path, ds in zip(files, datasets, strict=True)]
    unanswered = _send_over_one_association(ae, target, pending, timeout, result)
    for _ in range(C_STORE_RETRIES):
        if not unanswered:
            break
        unanswered = _send_over_one_association(ae, target, unanswered, timeout, result)
    result.failed.extend((path, reason) for path, _, reason in unanswered)
    return result


def _application_entity(datasets: list[Any], calling_aet: str, timeout: float) -> Any:
    """A pynetdicom AE asking for every SOP class and transfer syntax of ``datasets``."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=calling_aet)
    for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, attr, timeout)
    contexts: dict[str, set[str]] = {}
    for ds in datasets:
        syntax = str(ds.file_meta.TransferSyntaxUID)
        contexts.setdefault(str(ds.SOPClassUID), set()).add(syntax)
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(
            sop_class, sorted(syntaxes | {ExplicitVRLittleEndian, ImplicitVRLittleEndian})
        )
    return ae


def _send_over_one_association(
    ae: Any,
    target: Destination,
    pending: list[tuple[Path, Any, str]],
    timeout: float,
    result: PushResult,
) -> list[tuple[Path, Any, str]]:
    """C-STORE ``pending`` (path, dataset, why it is pending) over a new association, adding
    answered instances to ``result``; returns those without an answer, with the reason."""
    assoc = ae.associate(target.host, target.port, ae_title=target.called_aet)
    if not assoc.is_established:
        if assoc.is_rejected or assoc.is_aborted:
            how = "rejected" if assoc.is_rejected else "aborted"
            reason = (
                f"{target} refused the association ({how}): check the called AE title "
                f"{target.called_aet!r} and that the server accepts calling AE {ae.ae_title!r}"
            )
        else:
            reason = f"no answer from {target} within {timeout:g} s (timeout)"
        if not result.sent:  # nothing stored yet: the association itself is the error
            failed = [*result.failed, *((path, reason) for path, _, _ in pending)]
            raise PushError(reason, PushResult(str(target), failed=failed))
        return [(path, ds, reason) for path, ds, _ in pending]
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    unanswered: list[tuple[Path, Any, str]] = []
    try:
        for path, ds, _ in pending:
            if not assoc.is_established:
                unanswered.append((path, ds, "association lost"))
                continue
            code = getattr(assoc.send_c_store(ds), "Status", None)
            if code in _STORED_STATUSES:
                result.sent.append(path)
            elif code is None:
                unanswered.append((path, ds, "no response (timeout or connection lost)"))
            else:
                result.failed.append((path, f"C-STORE status 0x{int(code):04X}"))
    finally:
        if assoc.is_established:
            assoc.release()
    return unanswered


def _stow_rs(
    target: Destination, files: list[Path], datasets: list[Any], timeout: float, batch_size: int
) -> PushResult:
    scheme = "https" if target.scheme == "dicomwebs" else "http"
    url = f"{scheme}://{target.host}:{target.port}{target.path}/studies"
    result = PushResult(str(target))
    for start in range(0, len(files), batch_size):
        stop = start + batch_size
        batch = list(zip(files[start:stop], datasets[start:stop], strict=True))
        boundary = uuid.uuid4().hex
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + path.read_bytes()
                + b"\r\n"
                for path, _ in batch
            )
            + f"--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            reason = f"HTTP {err.code} {err.reason} from {url}"
            result.failed += [(p, reason) for p, _ in batch]
            continue
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = f"cannot reach {url}: {getattr(err, 'reason', err)}"
            raise PushError(reason, result) from err
        stored = _stored_uids(payload)
        for path, ds in batch:
            if str(ds.SOPInstanceUID) in stored:
                result.sent.append(path)
            else:
                result.failed.append((path, "not acknowledged in the STOW-RS response"))
    return result


def _stored_uids(payload: bytes) -> set[str]:
    """SOP Instance UIDs listed in a STOW-RS response's Referenced SOP Sequence (00081199)."""
    try:
        data = json.loads(payload.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return set()
    if isinstance(data, list):
        data = data[0] if data else {}
    items = data.get("00081199", {}).get("Value", [])
    return {uid for item in items for uid in item.get("00081155", {}).get("Value", [])}
