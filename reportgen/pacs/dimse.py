"""DICOM networking with a PACS (pynetdicom): echo, find studies, get a study, store files.

Only the DIMSE services every PACS speaks (Orthanc, dcm4chee, the vendors'): C-ECHO,
C-FIND and C-GET on the Study Root model, and C-STORE. C-GET brings the images back on
the association we opened, so no port has to be opened towards this machine (C-MOVE
would need the PACS to call us). Each failure is one `PacsError` line saying what the
PACS did, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom import sop_class as sop

from reportgen.errors import PacsError, ReportgenError


class NoSuchStudy(ReportgenError):
    """The PACS has no study with the UID asked for: a wrong UID, not a network fault
    (not a `PacsError`, so `pacs watch` does not retry it)."""


log = logging.getLogger(__name__)
TIMEOUT_S = 30
# What a study we draft from may hold, and what we write into it (C-GET asks for each
# class it will accept; an association has room for 128 presentation contexts).
STORAGE_CLASSES = (
    sop.MRImageStorage,
    sop.EnhancedMRImageStorage,
    sop.EnhancedMRColorImageStorage,
    sop.MRSpectroscopyStorage,
    sop.CTImageStorage,
    sop.EnhancedCTImageStorage,
    sop.SecondaryCaptureImageStorage,
    sop.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    sop.GrayscaleSoftcopyPresentationStateStorage,
    sop.RawDataStorage,
    sop.BasicTextSRStorage,
    sop.EnhancedSRStorage,
    sop.ComprehensiveSRStorage,
    sop.Comprehensive3DSRStorage,
    sop.KeyObjectSelectionDocumentStorage,
    sop.SegmentationStorage,
    sop.ParametricMapStorage,
    sop.EncapsulatedPDFStorage,
)
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


@dataclass(frozen=True)
class PacsNode:
    """Where the PACS listens and who we are to it."""

    host: str = "127.0.0.1"
    port: int = 4242
    called_aet: str = "ORTHANC"
    calling_aet: str = "REPORTGEN"

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"


def _ae(node: PacsNode) -> AE:
    ae = AE(ae_title=node.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    return ae


def _associate(ae: AE, node: PacsNode, **kwargs):
    assoc = ae.associate(node.host, node.port, ae_title=node.called_aet, **kwargs)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "could not be reached"
        raise PacsError(f"PACS {node} {why}")
    return assoc


def echo(node: PacsNode) -> None:
    """C-ECHO: the PACS answers and accepts us."""
    ae = _ae(node)
    ae.add_requested_context(sop.Verification)
    assoc = _associate(ae, node)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0:
        raise PacsError(f"PACS {node} did not answer the echo")


def find_studies(node: PacsNode, **match: str) -> list[Dataset]:
    """C-FIND at study level: one identifier per study (UID, modalities, date, time, count
    of instances), optionally matching `match` (e.g. ModalitiesInStudy="MR")."""
    ae = _ae(node)
    ae.add_requested_context(sop.StudyRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    for keyword in ("StudyInstanceUID", "ModalitiesInStudy", "StudyDate", "StudyTime"):
        setattr(query, keyword, match.get(keyword, ""))
    query.NumberOfStudyRelatedInstances = ""
    assoc = _associate(ae, node)
    found: list[Dataset] = []
    try:
        for status, identifier in assoc.send_c_find(
            query, sop.StudyRootQueryRetrieveInformationModelFind
        ):
            if not status:
                raise PacsError(f"PACS {node}: the study query got no answer")
            if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                found.append(identifier)
            elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                raise PacsError(
                    f"PACS {node} refused the study query (status 0x{status.Status:04X})"
                )
    finally:
        assoc.release()
    return found


def get_study(node: PacsNode, study_uid: str, out_dir: Path) -> int:
    """C-GET every instance of one study into `out_dir` (one file per instance); returns
    how many arrived."""
    out_dir.mkdir(parents=True, exist_ok=True)
    received = 0

    def on_store(event) -> int:
        nonlocal received
        ds = event.dataset
        ds.file_meta = event.file_meta
        ds.save_as(out_dir / f"{received:06d}.dcm", enforce_file_format=True)
        received += 1
        return 0x0000

    ae = _ae(node)
    ae.add_requested_context(sop.StudyRootQueryRetrieveInformationModelGet)
    for uid in STORAGE_CLASSES:
        ae.add_requested_context(uid, TRANSFER_SYNTAXES)
    roles = [build_role(uid, scp_role=True) for uid in STORAGE_CLASSES]
    assoc = _associate(ae, node, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    try:
        last = None
        for status, _ in assoc.send_c_get(query, sop.StudyRootQueryRetrieveInformationModelGet):
            if not status:
                raise PacsError(f"PACS {node}: the retrieval got no answer")
            last = status
    finally:
        assoc.release()
    if received == 0 and not find_studies(node, StudyInstanceUID=study_uid):
        # a PACS answers a retrieval of a study it does not have with a bare failure
        # status (Orthanc: 0xC000); the user needs to hear that the UID is unknown
        raise NoSuchStudy(f"PACS {node} holds no study with that StudyInstanceUID")
    if last is None or last.Status not in (0x0000, 0xB000):
        code = "none" if last is None else f"0x{last.Status:04X}"
        raise PacsError(f"PACS {node} could not send the study (status {code})")
    if received == 0:
        raise PacsError(f"PACS {node} holds no instance of that study")
    return received


def read_for_store(paths: Iterable[Path]) -> list[Dataset]:
    """The DICOM files named (each must be DICOM: refused before anything is sent) and the
    DICOM files under the folders named (anything else there, a report.txt, is passed by)."""
    datasets = []
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                try:
                    datasets.append(pydicom.dcmread(child))
                except Exception:  # pydicom raises several types for a non-DICOM file
                    log.info("not DICOM, not stored: %s", child.name)
            continue
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as exc:
            raise PacsError(f"{path}: not a DICOM file ({type(exc).__name__})") from exc
    return datasets


def store(node: PacsNode, paths: Iterable[Path]) -> int:
    """C-STORE each DICOM file; returns how many the PACS accepted."""
    datasets = read_for_store(paths)
    if not datasets:
        raise PacsError("no DICOM file to store")
    ae = _ae(node)
    for uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
        syntaxes = {str(ds.file_meta.TransferSyntaxUID) for ds in datasets if ds.SOPClassUID == uid}
        ae.add_requested_context(uid, sorted(syntaxes | set(TRANSFER_SYNTAXES)))
    assoc = _associate(ae, node)
    stored = 0
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if not status or status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
                code = "none" if not status else f"0x{status.Status:04X}"
                raise PacsError(f"PACS {node} did not store an instance (status {code})")
            stored += 1
    finally:
        assoc.release()
    return stored
