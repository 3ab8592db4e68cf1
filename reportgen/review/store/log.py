"""Reading and appending to the reward log; the one place the review app and `rl` write.

Every write is one short transaction. A save names the version it was based on and
becomes revision version+1; if someone saved first, the unique (draft, number) pair
refuses it and the caller gets a `Conflict` saying who saved and when, so no edit is
ever silently overwritten. A report is only stored if the template accepts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reportgen.errors import ConfigError, InputError, ReportgenError
from reportgen.io.write import replaced_privately
from reportgen.report import Report, load_template, revalidate, validate_report
from reportgen.report.compare import diff_reports
from reportgen.report.correction import CorrectionDiff, CorrectionRecord
from reportgen.review.store import chain
from reportgen.review.store.accounts import Account, Accounts
from reportgen.review.store.engine import open_log_engine
from reportgen.review.store.log_key import create_key, default_key_file, fingerprint, read_key
from reportgen.review.store.models import (
    AuditEvent,
    Claim,
    Clinician,
    Correction,
    DraftRow,
    LedgerLink,
    Revision,
    SignedReport,
    StudyRow,
)
from reportgen.review.store.sessions import Sessions
from reportgen.review.store.writing import Writer

log = logging.getLogger(__name__)


class Conflict(ReportgenError):
    """The save was based on a version someone else has already replaced (or signed)."""


class RefusedEdit(ReportgenError):
    """The edited report breaks the template; nothing was stored."""


class NotFound(ReportgenError):
    pass


def _headline(report: dict, headline: str) -> str | None:
    """The value of the `headline` result (BI-RADS category, FIGO stage, O-RADS score) a
    stored report states."""
    value = report.get("derived", {}).get(headline, {}).get("value")
    return str(value) if value is not None else None


@dataclass(frozen=True)
class WorklistRow:
    draft_id: int
    study_id: str
    template_id: str
    status: str  # draft | in review | signed
    version: int
    model_version: str | None
    created_at: datetime
    headline: str | None = None  # the current report's headline value (category, stage)
    first: bool = False  # the headline is one the template's worklist lists first
    indication: str | None = None  # why the study was done, as the current report states
    study_date: str | None = None  # the day the study was done (ISO), as the report dates it


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


class NotYours(ReportgenError):
    """The draft is claimed by another clinician; only an admin may override."""


class BrokenChain(ReportgenError):
    """The hash chain does not hold: a row was changed, deleted or added behind the app's back."""


class RewardLog:
    """The reward log over one database (SQLite file or PostgreSQL URL)."""

    def __init__(self, db: str | Engine, log_key: Path | None = None):
        """Open (and bring up to date) the log; `log_key` is its key file (default:
        `log_key.default_key_file`). A new log gets a new key and is keyed from its first
        link; a log keyed before needs its key; a log from before keys opens unkeyed
        (`verify` says so until `rekey`)."""
        self.engine = open_log_engine(db) if isinstance(db, str) else db
        if self.engine.dialect.name == "sqlite":
            _immediate_transactions(self.engine)
        self.key_file = Path(log_key) if log_key else default_key_file(self.engine.url)
        self.key = self._open_key()
        self.write = Writer(self.engine, self.key)
        self.accounts = Accounts(self.write)
        self.sessions = Sessions(self.engine)

    def _open_key(self) -> bytes | None:
        with self.engine.connect() as connection:
            links, recorded = chain.key_state(connection)
        if recorded is None and links:
            return None  # from before keys: `rekey` keys it, by the operator's choice
        if recorded is None:
            key = create_key(self.key_file)
            with Writer(self.engine, key)() as session:  # under the lock: one first link
                if chain.key_state(session.connection()) == (0, None):
                    chain.add_key_link(session.connection(), key)
            return self._open_key()
        key = read_key(self.key_file)
        if fingerprint(key) != recorded:
            raise ConfigError(
                f"log key {self.key_file} is not the key this reward log was keyed with"
            )
        return key

    def rekey(self) -> Path:
        """Key a log from before keys, once: its plain chain must verify first; the key
        link then seals every row before it. Returns the key file."""
        if self.key is not None:
            raise ConfigError("the reward log is keyed already")
        problems = [p for p in self.verify() if p != chain.UNKEYED]
        if problems:
            raise BrokenChain(f"the reward log was altered outside the app: {problems[0]}")
        key = create_key(self.key_file)
        with Writer(self.engine, key)() as session:
            chain.add_key_link(session.connection(), key)
        self.key = key
        self.write = Writer(self.engine, key)
        self.accounts.write = self.write
        return self.key_file

    def close(self) -> None:
        self.engine.dispose()

    def verify(self) -> list[str]:
        """Problems with the hash chain, the first broken link first (empty: intact)."""
        with self.engine.connect() as connection:
            return chain.verify(connection, self.key)

    def chain_head(self) -> tuple[int, str]:
        """(links, hash of the last link): kept elsewhere, it shows a log later cut short."""
        with Session(self.engine) as session:
            last = session.scalar(select(LedgerLink).order_by(LedgerLink.seq.desc()).limit(1))
            return (last.seq, last.sha256) if last else (0, chain.GENESIS)

    def check_chain(self) -> None:
        problems = self.verify()
        if problems:
            more = f" (and {len(problems) - 1} more; `reportgen review verify` lists them)"
            raise BrokenChain(
                f"the reward log was altered outside the app: {problems[0]}"
                + (more if len(problems) > 1 else "")
            )

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
        with self.write() as session:
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
                select(DraftRow, latest.c.version, SignedReport.id, Revision.report_json)
                .outerjoin(latest, latest.c.draft_id == DraftRow.id)
                .outerjoin(SignedReport, SignedReport.draft_id == DraftRow.id)
                .outerjoin(
                    Revision,
                    (Revision.draft_id == DraftRow.id) & (Revision.number == latest.c.version),
                )
                .order_by(DraftRow.id)
            ).all()
            out = []
            for d, version, signed, revised in rows:
                template = load_template(d.template_id)
                current = json.loads(revised or d.report_json)
                headline = _headline(current, template.headline)
                out.append(
                    WorklistRow(
                        draft_id=d.id,
                        study_id=d.study_id,
                        template_id=d.template_id,
                        status="signed" if signed else ("in review" if version else "draft"),
                        version=int(version or 0),
                        model_version=d.model_version,
                        created_at=_utc(d.created_at),
                        headline=headline,
                        first=headline in template.derived(template.headline).triage,
                        indication=current.get("study", {}).get("indication"),
                        study_date=current.get("study", {}).get("study_date"),
                    )
                )
            return sorted(out, key=lambda r: (not r.first, r.draft_id))  # triage first

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
        if report.provenance.signed_by or report.provenance.signed_at:
            raise RefusedEdit("an edit cannot carry a signature: signing adds it")
        drafted = Report.from_json(draft.report_json)
        validation = revalidate(report, load_template(draft.template_id), drafted)
        errors = [p for p in validation.problems if p.severity == "error"]
        if errors:
            raise RefusedEdit(f"{errors[0].where}: {errors[0].message}")
        report.validation = validation
        return report.to_json()

    # -- claims -------------------------------------------------------------------
    def _claim_row(self, session: Session, draft_id: int) -> Claim | None:
        return session.scalar(
            select(Claim).where(Claim.draft_id == draft_id).order_by(Claim.id.desc()).limit(1)
        )

    def claimant(self, draft_id: int) -> Account | None:
        """Who is editing the draft (its latest claim), if anyone."""
        with Session(self.engine) as session:
            claim = self._claim_row(session, draft_id)
        return self.accounts.get(claim.clinician_id) if claim else None

    def open(self, draft_id: int, clinician_id: int) -> Account | None:
        """A clinician opened the draft's review page: audited, and the draft is theirs to
        edit if no one has claimed it (nor signed it). Returns the claimant."""
        with self.write() as session:
            if session.get(DraftRow, draft_id) is None:
                raise NotFound(f"no draft {draft_id}")
            session.add(AuditEvent(clinician_id=clinician_id, action="open", draft_id=draft_id))
            signed = session.scalar(
                select(SignedReport.id).where(SignedReport.draft_id == draft_id)
            )
            if self._claim_row(session, draft_id) is None and signed is None:
                session.add(Claim(draft_id=draft_id, clinician_id=clinician_id, override=False))
        return self.claimant(draft_id)

    def _take(self, session: Session, draft_id: int, clinician_id: int, override: bool) -> None:
        """The writer may edit this draft: theirs, unclaimed (now theirs), or an admin's
        explicit override (audited); `NotYours` otherwise."""
        claim = self._claim_row(session, draft_id)
        if claim is not None and claim.clinician_id == clinician_id:
            return
        if claim is not None:
            holder = self.accounts.get(claim.clinician_id, session)
            name = holder.display_name if holder else "another clinician"
            if not override:
                raise NotYours(
                    f"{name} is editing this draft (since {_utc(claim.at):%Y-%m-%d %H:%M} UTC); "
                    "only an admin can take it over"
                )
            account = self.accounts.get(clinician_id, session)
            if account is None or not account.is_admin:
                raise NotYours(f"{name} is editing this draft; only an admin can override")
            session.add(
                AuditEvent(
                    clinician_id=clinician_id,
                    action="override",
                    draft_id=draft_id,
                    detail={"from_clinician": claim.clinician_id},
                )
            )
        session.add(Claim(draft_id=draft_id, clinician_id=clinician_id, override=claim is not None))

    def _refuse_if_signed(self, session: Session, draft_id: int) -> None:
        signed = session.scalar(select(SignedReport).where(SignedReport.draft_id == draft_id))
        if signed is not None:
            who = session.get(Clinician, signed.clinician_id)
            raise Conflict(
                f"this report was signed by {who.display_name if who else 'someone'} at "
                f"{_utc(signed.signed_at):%Y-%m-%d %H:%M} UTC; it can no longer be edited"
            )

    def _prepared(self, draft_id: int, report: Report, clinician_id: int) -> tuple[str, str]:
        """The edit checked against its draft's template (and the draft's JSON), before the
        writer lock is taken: validation is the slow part of a save, and needs only the
        draft, which never changes."""
        with Session(self.engine) as session:
            draft = session.get(DraftRow, draft_id)
            if draft is None:
                raise NotFound(f"no draft {draft_id}")
            self._refuse_if_signed(session, draft_id)  # the likelier refusal, said first
            return self._checked(session, draft, report, clinician_id), draft.report_json

    def _base(
        self, session: Session, draft_id: int, base_version: int, clinician_id: int, override: bool
    ) -> DraftRow:
        draft = session.get(DraftRow, draft_id)
        if draft is None:
            raise NotFound(f"no draft {draft_id}")
        self._refuse_if_signed(session, draft_id)
        self._take(session, draft_id, clinician_id, override)
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

    def save(
        self,
        draft_id: int,
        clinician_id: int,
        base_version: int,
        report: Report,
        override: bool = False,
    ) -> int:
        """Append a revision; returns the new version. Refuses stale or invalid saves, and
        saves over another clinician's claim unless an admin asks to `override`."""
        text, _ = self._prepared(draft_id, report, clinician_id)
        try:
            with self.write() as session:
                self._base(session, draft_id, base_version, clinician_id, override)
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

    def sign(
        self,
        draft_id: int,
        clinician_id: int,
        base_version: int,
        report: Report,
        override: bool = False,
    ) -> int:
        """Store the final revision, the signed report and the correction record at once;
        the signed report states who signed it and when."""
        text, draft_json = self._prepared(draft_id, report, clinician_id)
        now = datetime.now(UTC)
        with Session(self.engine) as session:
            signer = session.get(Clinician, clinician_id)
        signed_report = Report.from_json(text)
        signed_report.provenance.signed_by = signer.display_name if signer else str(clinician_id)
        signed_report.provenance.signed_at = now.isoformat(timespec="seconds")
        text = signed_report.to_json()
        drafted = Report.from_json(draft_json)
        diff = diff_reports(drafted, Report.from_json(text)).to_dict()
        diff["comment_changed"] = drafted.comment != report.comment
        try:
            with self.write() as session:
                draft = self._base(session, draft_id, base_version, clinician_id, override)
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
                    signed_at=now,
                )
                session.add(signed)
                session.flush()
                opened = self._first_open(session, draft_id, clinician_id)
                session.add(
                    Correction(
                        draft_id=draft_id,
                        signed_report_id=signed.id,
                        clinician_id=clinician_id,
                        template_id=draft.template_id,
                        draft_json=draft.report_json,
                        corrected_json=text,
                        diff=diff,
                        time_spent_s=(now - opened).total_seconds() if opened else 0.0,
                        opened_by_signer=opened is not None,
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

    def _first_open(self, session: Session, draft_id: int, clinician_id: int) -> datetime | None:
        """When the signer first opened the review page (time spent counts from there)."""
        opened = session.scalar(
            select(func.min(AuditEvent.at)).where(
                AuditEvent.draft_id == draft_id,
                AuditEvent.clinician_id == clinician_id,
                AuditEvent.action == "open",
            )
        )
        return _utc(opened) if opened else None

    # -- audit ----------------------------------------------------------------------
    def audit(
        self,
        action: str,
        clinician_id: int | None = None,
        draft_id: int | None = None,
        detail: dict | None = None,
    ) -> None:
        with self.write() as session:
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
                    opened_by_signer=c.opened_by_signer,
                    signed_at=_utc(signed_at).isoformat(),
                    diff=CorrectionDiff.model_validate(c.diff),
                    draft=Report.from_json(c.draft_json),
                    corrected=Report.from_json(c.corrected_json),
                )

    def export_corrections(self, out: Path) -> int:
        """Write corrections as JSONL, 0600 (signed reports and clinicians' names), atomically:
        a partial file never replaces a good one."""
        out = Path(out)
        if not out.parent.is_dir():
            raise InputError(out.parent, "folder does not exist")
        self.check_chain()  # never hand the learner a log someone rewrote
        count = 0
        with replaced_privately(out) as part, part.open("w", encoding="utf-8") as handle:
            for record in self.corrections():
                handle.write(record.to_json_line() + "\n")
                count += 1
        self.audit("export", detail={"corrections": count})
        return count
