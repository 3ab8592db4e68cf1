"""`reportgen ingest`: a DICOM folder becomes a de-identified study folder.

The output is written to a temporary folder beside OUT and renamed into place only
when complete, so a failed ingest leaves nothing behind and an existing OUT is never
touched. NIfTI headers are built fresh (no description or auxiliary text carried
over) and sidecars hold technical acquisition tags only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from reportgen import __version__
from reportgen.errors import InputError
from reportgen.io.dicom import (
    DCE_CHOICE_PREFIX,
    ConvertedSeries,
    body_part,
    convert_dicom_folder,
    dce_timing,
)
from reportgen.io.write import check_writable, nifti_image, save_nifti


def write_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write with a fresh header: scanner-anchored qform/sform, mm units, nothing else."""
    save_nifti(nifti_image(data, affine), path)


def _sidecar(vol: ConvertedSeries, name: str | None) -> dict:
    side = {"sequence": name, "series_number": vol.series_number, "classified_by": vol.reason}
    if vol.bvals:
        side["bvals"] = vol.bvals
    side["acquisition"] = vol.info
    return side


def _not_written(reasons: list[str]) -> str:
    """One line for a series whose converted volumes the model does not read."""
    what = reasons[0] if len(reasons) == 1 else f"{len(reasons)} volumes (the first: {reasons[0]})"
    return f"not read by the model, not written: {what}; --all-series writes it"


def ingest_dicom(
    dicom_dir: Path,
    out_dir: Path,
    overrides: dict[int, str] | None = None,
    study_id: str | None = None,
    all_series: bool = False,
) -> dict:
    """Convert, name and write a DICOM study; returns a summary of what was written.

    By default only what a draft reads is converted and written (a 70-phase dynamic
    gives its four chosen phases, not 70 files); every other series is listed in
    `skipped_series` with why, one entry per series. `all_series` writes every series
    that converts (unread ones as `other_series-N`). The study id is `study_id` or a hash
    of the StudyInstanceUID: never the folder names, which the user may have named after
    the patient."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(out_dir, "output exists and is not an empty folder; choose a new one")
    check_writable(out_dir, is_folder=True)  # before the conversion, not after it
    conversion = convert_dicom_folder(dicom_dir, overrides, protocol_only=not all_series)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    written: dict[str, str] = {}
    try:
        other_count: dict[int, int] = {}
        unread: dict[int, list[str]] = {}  # converted, not read, not written: per series
        for vol in conversion.converted:
            if vol.name:
                stem = vol.name
            elif not all_series:
                if vol.kind is None:  # a losing candidate is named in the warnings
                    unread.setdefault(vol.series_number, []).append(vol.reason)
                continue
            else:
                k = other_count[vol.series_number] = other_count.get(vol.series_number, 0) + 1
                stem = f"other_series-{vol.series_number}" + (f"_{k}" if k > 1 else "")
            write_nifti(vol.data, vol.affine, staging / f"{stem}.nii.gz")
            if vol.bvals and vol.data.ndim == 4:
                (staging / f"{stem}.bval").write_text(" ".join(f"{b:g}" for b in vol.bvals) + "\n")
            (staging / f"{stem}.json").write_text(json.dumps(_sidecar(vol, vol.name), indent=2))
            written[stem] = vol.reason
        study = {
            "study_id": study_id or conversion.study_id,
            "source_form": "dicom",
            "written_by": f"reportgen {__version__}",
            "deidentified": "no patient, institution, date or UID tags are written",
            "files": written,
            "skipped_series": [
                *({"series_number": n, "reason": why} for n, why in conversion.skipped),
                *(
                    {"series_number": n, "reason": _not_written(reasons)}
                    for n, reasons in unread.items()
                ),
            ],
            "warnings": conversion.warnings,
        }
        part = body_part(conversion.groups)
        if part:
            study["body_part"] = part  # the region, for the fitness check after ingest
        choice = [w for w in conversion.warnings if w.startswith(DCE_CHOICE_PREFIX)]
        if choice:
            study["dce_phases"] = choice[0]
        timing = dce_timing(conversion.converted)
        if timing:  # seconds after the injection (never a time of day)
            study["dce_timing"] = timing
        (staging / "study.json").write_text(json.dumps(study, indent=2))
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return study
