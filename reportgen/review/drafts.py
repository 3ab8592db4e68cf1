"""Finding the drafts `reportgen generate` wrote in a studies folder and adding them to the log.

A draft is any report JSON under the folder written by a model. Its study is the item
in the folder named like the draft's study id (a study folder, or a NIfTI file), or the
folder the draft sits in when that folder holds NIfTI files. Paths are stored relative
to the studies folder, and a draft or study that resolves outside it (a symlink out, as
for heat maps in `viewer.inside`) is skipped, so the app can never be pointed outside it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reportgen.errors import InputError, ReportgenError
from reportgen.report.io import read_report
from reportgen.review.store import RewardLog
from reportgen.review.viewer import PathRefused, inside

log = logging.getLogger(__name__)
MAX_DRAFT_BYTES = 5_000_000


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _within(root: Path, path: Path) -> bool:
    try:
        inside(root, str(path.relative_to(root)))
    except PathRefused:
        return False
    return True


def find_study(root: Path, draft_file: Path, study_id: str) -> Path | None:
    for candidate in sorted(root.rglob("*")):
        if (
            _stem(candidate) == study_id
            and (candidate.is_dir() or candidate.name.endswith((".nii", ".nii.gz")))
            and _within(root, candidate)
        ):
            return candidate
    folder = draft_file.parent
    if any(p.name.endswith((".nii", ".nii.gz")) for p in folder.iterdir()):
        return folder
    return None


def import_drafts(log_db: RewardLog, root: Path) -> tuple[int, int]:
    """Add every model draft under `root` not yet in the log; returns (added, seen)."""
    root = root.resolve()
    added = seen = 0
    for path in sorted(root.rglob("*.json")):
        if not _within(root, path):
            log.warning("draft %s skipped: it resolves outside the studies folder", path.name)
            continue
        if path.stat().st_size > MAX_DRAFT_BYTES or path.name == "manifest.json":
            continue
        try:
            report = read_report(path)
        except InputError:
            continue  # not a report (sidecars, configs)
        if report.provenance.source != "model":
            continue
        seen += 1
        study = find_study(root, path, report.study.study_id)
        try:
            _, new = log_db.add_draft(
                report,
                study_path=str(study.relative_to(root)) if study else None,
                source_path=str(path.relative_to(root)),
            )
        except ReportgenError as exc:
            log.warning("draft %s not added: %s", path.relative_to(root), exc)
            continue
        added += int(new)
    return added, seen
