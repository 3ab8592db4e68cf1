"""`reportgen pacs pull`: a study from the PACS into the study-folder form.

The images come over C-GET, then go through the same conversion and de-identification as
`reportgen ingest`: the study folder holds NIfTI and no identifier. The DICOM itself is
kept only where `keep_dicom` says (a DICOM SR or SEG of the draft must reference it, and it
carries the patient's identity, as every PACS copy does).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from reportgen.errors import InputError
from reportgen.io.ingest import ingest_dicom
from reportgen.pacs.dimse import PacsNode, get_study


@dataclass
class Pulled:
    instances: int
    study_id: str
    files: dict[str, str]  # stem -> why it was named so
    skipped: list[dict]  # series not converted, with the reason


def pull_study(node: PacsNode, study_uid: str, out: Path, keep_dicom: Path | None = None) -> Pulled:
    """C-GET `study_uid` and ingest it into the new study folder `out`."""
    for folder in (out, keep_dicom):
        if folder is not None and folder.exists() and any(folder.iterdir()):
            raise InputError(folder, "exists and is not empty; choose a new folder")
    with tempfile.TemporaryDirectory(prefix="reportgen-pull-") as tmp:
        raw = keep_dicom or Path(tmp) / "dicom"
        instances = get_study(node, study_uid, raw)
        result = ingest_dicom(raw, out)
    return Pulled(instances, result["study_id"], result["files"], result["skipped_series"])
