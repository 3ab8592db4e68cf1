"""Reading and appending to the reward log; the one place the review app and `rl` write.

Every write is one short transaction. A save names the version it was based on and
becomes revision version+1; if someone saved first, the unique (draft, number) pair
refuses it and the caller gets a `Conflict` saying who saved and when, so no edit is
ever silently overwritten. A report is only stored if the template accepts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reportgen.errors import ConfigError, InputError, ReportgenError
from reportgen.report import Report, load_template, validate_report
from reportgen.report.compare import diff_reports
from reportgen.report.correction import CorrectionDiff, CorrectionRecord
from reportgen.review.store.engine import open_log_engine
from reportgen.review.store.models import (
    AuditEvent,
    Clinician,
    Correction,
    DraftRow,
    Revision,
    SignedReport,
    StudyRow,
)

log = logging.getLogger(__name__)
MIN_PASSWORD_LENGTH = 10


class Conflict(ReportgenError):
    """The save was based on a version someone else has already replaced (or signed)."""


class RefusedEdit(ReportgenError):
    """The edited report breaks the template; nothing was stored."""


class NotFound(ReportgenError):
    pass


@dataclass(frozen=True)
class WorklistRow:
    draft_id: int
    study_id: str
    template_id: str
    status: str  # draft | in review | signed
    version: int
    model_version: str | None
    created_at: datetime


@dataclass(frozen=True)
class DraftState:
    draft_id: int
    study_id: str
    study_path: str | None
    source_path: str | None
    template_id: str
    draft: Report
    current: Report
    version: int
    status: str
    signed_by: str | None


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _immediate_transactions(engine: Engine) -> None:
    """SQLite: take the write lock at BEGIN, so a read-then-write transaction waits its turn
    (busy_timeout) instead of failing with 'database is locked' when another writer commits."""

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class RewardLog:
    """The reward log over one database (SQLite file or PostgreSQL URL)."""

    def __init__(self, db: str | Engine):
        self.engine = open_log_engine(db) if isinstance(db, str) else db
        if self.engine.dialect.name == "sqlite":
            _immediate_transactions(self.engine)
        self._hasher = PasswordHasher()

    def close(self) -> None:
        self.engine.dispose()

    # -- clinicians -----------------------------------------------------------------
    def add_clinician(self, username: str, display_name: str, password: str) -> int:
        username = username.strip()
        if (
            not username
            or len(username) > 64
            or not username.replace(".", "").replace("_", "").replace("-", "").isalnum()
        ):
            raise ConfigError("a username is 1-64 letters, digits, '.', '_' or '-'")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ConfigError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
        with Session(self.engine) as session, session.begin():
            if session.scalar(select(Clinician).where(Clinician.username == username)):
                raise ConfigError(f"user {username!r} already exists")
            clinician = Clinician(
                username=username,
                display_name=display_name or username,
                password_hash=self._hasher.hash(password),
            )
            session.add(clinician)
            session.flush()
            session.add(AuditEvent(clinician_id=clinician.id, action="user_added", detail={}))
            return clinician.id

    def authenticate(self, username: str, password: str) -> Clinician | None:
        with Session(self.engine, expire_on_commit=False) as session:
            clinician = session.scalar(select(Clinician).where(Clinician.username == username))
            if clinician is None:
                # spend the same time as a real check, so a wrong name is not told apart
                with contextlib.suppress(VerificationError):
                    self._hasher.verify(self._hasher.hash("x" * MIN_PASSWORD_LENGTH), password)
                return None
            try:
                self._hasher.verify(clinician.password_hash, password)
            except (VerificationError, InvalidHashError):
                return None
            return clinician

    def clinician(self, clinician_id: int) -> Clinician | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(Clinician, clinician_id)

    # -- drafts ---------------------------------------------------------------------
    def add_draft(
        self, report: Report, study_path: str | None = None, source_path: str | None = None
    ) -> tuple[int, bool]:
        """Store a model's draft (idempotent by content); returns (draft id, newly added)."""
        if report.provenance.source != "model":
            raise InputError(source_path, "not a model draft (provenance.source is not 'model')")
        template = load_template(report.template.id)
        if not validate_report(report, template).valid:
            raise InputError(source_path, "the draft does not pass `reportgen validate`")
        text = report.to_json()
        digest = hashlib.sha256(text.encode()).hexdigest()
        with Session(self.engine) as session, session.begin():
            existing = session.scalar(select(DraftRow.id).where(DraftRow.content_sha256 == digest))
            if existing is not None:
                return existing, False
            if session.get(StudyRow, report.study.study_id) is None:
                session.add(StudyRow(id=report.study.study_id, path=study_path))
                session.flush()  # no ORM relationship orders the inserts; the study goes first
            draft = DraftRow(
                study_id=report.study.study_id,
                template_id=report.template.id,
                report_json=text,
                content_sha256=digest,
                model_name=report.provenance.model_name,
                model_version=report.provenance.model_version,
                checkpoint_sha256=report.provenance.checkpoint_sha256,
                source_path=source_path,
            )
            session.add(draft)
            session.flush()
            session.add(AuditEvent(action="draft_added", draft_id=draft.id, detail={}))
            return draft.id, True

    def _latest(self, session: Session, draft_id: int) -> int:
        return int(
            session.scalar(
                select(func.coalesce(func.max(Revision.number), 0)).where(
                    Revision.draft_id == draft_id
                )
            )
        )

    def worklist(self) -> list[WorklistRow]:
        with Session(self.engine) as session:
            latest = (
                select(Revision.draft_id, func.max(Revision.number).label("version"))
                .group_by(Revision.draft_id)
                .subquery()
            )
            rows = session.execute(
                select(DraftRow, latest.c.version, SignedReport.id)
                .outerjoin(latest, latest.c.draft_id == DraftRow.id)
                .outerjoin(SignedReport, SignedReport.draft_id == DraftRow.id)
                .order_by(DraftRow.id)
            ).all()
            return [
                WorklistRow(
                    draft_id=d.id,
                    study_id=d.study_id,
                    template_id=d.template_id,
                    status="signed" if signed else ("in review" if version else "draft"),
                    version=int(version or 0),
                    model_version=d.model_version,
                    created_at=_utc(d.created_at),
                )
                for d, version, signed in rows
            ]

    def state(self, draft_id: int) -> DraftState:
        with Session(self.engine) as session:
            draft = session.get(DraftRow, draft_id)
            if draft is None:
                raise NotFound(f"no draft {draft_id}")
            study = session.get(StudyRow, draft.study_id)
            version = self._latest(session, draft_id)
            current = draft.report_json
            if version:
                current = session.scalar(
                    select(Revision.report_json).where(
                        Revision.draft_id == draft_id, Revision.number == version
                    )
                )
            signed = session.scalar(select(SignedReport).where(SignedReport.draft_id == draft_id))
            signer = session.get(Clinician, signed.clinician_id) if signed else None
            return DraftState(
                draft_id=draft.id,
                study_id=draft.study_id,
                study_path=study.path if study else None,
                source_path=draft.source_path,
                template_id=draft.template_id,
                draft=Report.from_json(draft.report_json),
                current=Report.from_json(signed.report_json if signed else current),
                version=version,
                status="signed" if signed else ("in review" if version else "draft"),
                signed_by=signer.display_name if signer else None,
            )

    # -- edits ----------------------------------------------------------------------
    def _checked(self, session: Session, draft: DraftRow, report: Report, clinician_id: int) -> str:
        if report.template.id != draft.template_id:
            raise RefusedEdit(
                f"the edit uses template {report.template.id!r}, the draft {draft.template_id!r}"
            )
        if report.study.study_id != draft.study_id:
            raise RefusedEdit("the edit is for a different study than the draft")
        if report.provenance.source != "human" or report.provenance.clinician_id != str(
            clinician_id
        ):
            raise RefusedEdit("an edit must carry the signed-in clinician as its author")
        validation = validate_report(report, load_template(draft.template_id))
        errors = [p for p in validation.problems if p.severity == "error"]
        if errors:
            raise RefusedEdit(f"{errors[0].where}: {errors[0].message}")
        report.validation = validation
        return report.to_json()

    def _base(self, session: Session, draft_id: int, base_version: int) -> DraftRow:
        draft = session.get(DraftRow, draft_id)
        if draft is None:
            raise NotFound(f"no draft {draft_id}")
        signed = session.scalar(select(SignedReport).where(SignedReport.draft_id == draft_id))
        if signed is not None:
            who = session.get(Clinician, signed.clinician_id)
            raise Conflict(
                f"this report was signed by {who.display_name if who else 'someone'} at "
                f"{_utc(signed.signed_at):%Y-%m-%d %H:%M} UTC; it can no longer be edited"
            )
        latest = self._latest(session, draft_id)
        if base_version != latest:
            row = session.scalar(
                select(Revision).where(Revision.draft_id == draft_id, Revision.number == latest)
            )
            who = session.get(Clinician, row.clinician_id) if row else None
            raise Conflict(
                f"version {latest} was saved by {who.display_name if who else 'someone'} at "
                f"{_utc(row.created_at):%H:%M:%S} UTC after you opened version {base_version}; "
                "reload to see their changes (your edit was not saved)"
                if row
                else f"version {base_version} does not exist (latest is {latest}); reload"
            )
        return draft

    def save(self, draft_id: int, clinician_id: int, base_version: int, report: Report) -> int:
        """Append a revision; returns the new version. Refuses stale or invalid saves."""
        try:
            with Session(self.engine) as session, session.begin():
                draft = self._base(session, draft_id, base_version)
                text = self._checked(session, draft, report, clinician_id)
                session.add(
                    Revision(
                        draft_id=draft_id,
                        number=base_version + 1,
                        report_json=text,
                        clinician_id=clinician_id,
                    )
                )
                session.add(
                    AuditEvent(
                        clinician_id=clinician_id,
                        action="save",
                        draft_id=draft_id,
                        detail={"version": base_version + 1},
                    )
                )
        except IntegrityError as exc:
            raise Conflict(
                f"someone saved this report at the same moment (version {base_version + 1}); "
                "reload (your edit was not saved)"
            ) from exc
        return base_version + 1

    def sign(self, draft_id: int, clinician_id: int, base_version: int, report: Report) -> int:
        """Store the final revision, the signed report and the correction record at once."""
        try:
            with Session(self.engine) as session, session.begin():
                draft = self._base(session, draft_id, base_version)
                text = self._checked(session, draft, report, clinician_id)
                number = base_version + 1
                session.add(
                    Revision(
                        draft_id=draft_id,
                        number=number,
                        report_json=text,
                        clinician_id=clinician_id,
                    )
                )
                signed = SignedReport(
                    draft_id=draft_id,
                    revision_number=number,
                    report_json=text,
                    clinician_id=clinician_id,
                )
                session.add(signed)
                session.flush()
                drafted = Report.from_json(draft.report_json)
                diff = diff_reports(drafted, Report.from_json(text)).to_dict()
                diff["comment_changed"] = drafted.comment != report.comment
                session.add(
                    Correction(
                        draft_id=draft_id,
                        signed_report_id=signed.id,
                        clinician_id=clinician_id,
                        template_id=draft.template_id,
                        draft_json=draft.report_json,
                        corrected_json=text,
                        diff=diff,
                        time_spent_s=self._time_spent(session, draft_id, clinician_id),
                        model_version=draft.model_version,
                        checkpoint_sha256=draft.checkpoint_sha256,
                    )
                )
                session.add(
                    AuditEvent(
                        clinician_id=clinician_id,
                        action="sign",
                        draft_id=draft_id,
                        detail={"version": number, "fields_changed": len(diff["changes"])},
                    )
                )
                return signed.id
        except IntegrityError as exc:
            raise Conflict(
                "someone signed or saved this report at the same moment; reload"
            ) from exc

    def _time_spent(self, session: Session, draft_id: int, clinician_id: int) -> float:
        opened = session.scalar(
            select(func.min(AuditEvent.at)).where(
                AuditEvent.draft_id == draft_id,
                AuditEvent.clinician_id == clinician_id,
                AuditEvent.action == "open",
            )
        )
        return max(0.0, (datetime.now(UTC) - _utc(opened)).total_seconds()) if opened else 0.0

    # -- audit ----------------------------------------------------------------------
    def audit(
        self,
        action: str,
        clinician_id: int | None = None,
        draft_id: int | None = None,
        detail: dict | None = None,
    ) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(
                AuditEvent(
                    clinician_id=clinician_id, action=action, draft_id=draft_id, detail=detail or {}
                )
            )

    def audit_trail(self, draft_id: int | None = None) -> list[dict]:
        with Session(self.engine) as session:
            query = select(AuditEvent).order_by(AuditEvent.id)
            if draft_id is not None:
                query = query.where(AuditEvent.draft_id == draft_id)
            return [
                {
                    "id": e.id,
                    "at": _utc(e.at).isoformat(),
                    "clinician_id": e.clinician_id,
                    "action": e.action,
                    "draft_id": e.draft_id,
                    "detail": e.detail,
                }
                for e in session.scalars(query)
            ]

    def revision_numbers(self, draft_id: int) -> list[int]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(Revision.number)
                    .where(Revision.draft_id == draft_id)
                    .order_by(Revision.number)
                )
            )

    # -- corrections ----------------------------------------------------------------
    def corrections(self) -> Iterator[CorrectionRecord]:
        """Every correction record, oldest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(
                    Correction,
                    Clinician.username,
                    DraftRow.study_id,
                    SignedReport.signed_at,
                    StudyRow.path,
                )
                .join(Clinician, Clinician.id == Correction.clinician_id)
                .join(DraftRow, DraftRow.id == Correction.draft_id)
                .join(StudyRow, StudyRow.id == DraftRow.study_id)
                .join(SignedReport, SignedReport.id == Correction.signed_report_id)
                .order_by(Correction.id)
            )
            for c, username, study_id, signed_at, study_path in rows:
                yield CorrectionRecord(
                    correction_id=c.id,
                    draft_id=c.draft_id,
                    study_id=study_id,
                    study_path=study_path,
                    template_id=c.template_id,
                    clinician=username,
                    model_version=c.model_version,
                    checkpoint_sha256=c.checkpoint_sha256,
                    time_spent_s=round(c.time_spent_s, 3),
                    signed_at=_utc(signed_at).isoformat(),
                    diff=CorrectionDiff.model_validate(c.diff),
                    draft=Report.from_json(c.draft_json),
                    corrected=Report.from_json(c.corrected_json),
                )

    def export_corrections(self, out: Path) -> int:
        """Write corrections as JSONL (atomically: a partial file never replaces a good one)."""
        out = Path(out)
        if not out.parent.is_dir():
            raise InputError(out.parent, "folder does not exist")
        tmp = out.with_name(out.name + ".partial")
        count = 0
        with tmp.open("w", encoding="utf-8") as handle:
            for record in self.corrections():
                handle.write(record.to_json_line() + "\n")
                count += 1
        tmp.replace(out)
        self.audit("export", detail={"corrections": count})
        return count
