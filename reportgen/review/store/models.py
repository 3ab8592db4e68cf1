"""The reward log's tables.

Everything a clinician does is an insert: a save is a new revision numbered one past
the version it was based on (a unique (draft, number) pair turns a stale save into a
conflict instead of a lost edit), signing inserts a signed report and a correction
record, and every action appends to the audit trail. Account changes (password, role,
disabled) and claims on drafts are inserts too. Nothing is updated or deleted; the
migrations install triggers that make the database itself refuse it, and every appended
row is a link of the hash chain in `ledger` (see `chain.py`), so a row rewritten behind
the app's back is found. Only `sessions` changes in place (it is not part of the record),
and only as far as a trigger allows: a last request noted, an end set once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("reviewer", "admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Clinician(Base):
    __tablename__ = "clinicians"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StudyRow(Base):
    """A study the app can show; `path` is relative to the configured studies folder."""

    __tablename__ = "studies"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DraftRow(Base):
    """A report as the model wrote it, with the model that wrote it."""

    __tablename__ = "drafts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"))
    template_id: Mapped[str] = mapped_column(String(64))
    report_json: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    model_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Revision(Base):
    """One save of an edit; `number` is the draft's version after this save (draft = 0)."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("draft_id", "number", name="uq_revision_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    number: Mapped[int] = mapped_column(Integer)
    report_json: Mapped[str] = mapped_column(Text)
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SignedReport(Base):
    __tablename__ = "signed_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), unique=True)
    revision_number: Mapped[int] = mapped_column(Integer)
    report_json: Mapped[str] = mapped_column(Text)
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id"))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Correction(Base):
    """Draft and signed report side by side with their field-level diff: a training example."""

    __tablename__ = "corrections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), unique=True)
    signed_report_id: Mapped[int] = mapped_column(ForeignKey("signed_reports.id"))
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id"))
    template_id: Mapped[str] = mapped_column(String(64))
    draft_json: Mapped[str] = mapped_column(Text)
    corrected_json: Mapped[str] = mapped_column(Text)
    diff: Mapped[dict] = mapped_column(JSON)
    time_spent_s: Mapped[float] = mapped_column(Float)
    # False: signed without the signer ever opening the review page (an API-only signature,
    # whose time spent means nothing); None: signed before this was recorded
    opened_by_signer: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """Who did what, when. Details hold ids and field names, never patient identifiers."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    clinician_id: Mapped[int | None] = mapped_column(ForeignKey("clinicians.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    draft_id: Mapped[int | None] = mapped_column(ForeignKey("drafts.id"), nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class AccountChange(Base):
    """A change to an account: a new password hash, a role, disabled or enabled again.

    The account's state is its latest value of each; `by_clinician_id` is None when the
    operator changed it from the command line."""

    __tablename__ = "account_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id"))
    by_clinician_id: Mapped[int | None] = mapped_column(ForeignKey("clinicians.id"), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    disabled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Claim(Base):
    """Who is editing a draft: whoever opened it first, until an admin overrides."""

    __tablename__ = "claims"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id"))
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerLink(Base):
    """One link of the hash chain: a row of a log table and the hash of everything before."""

    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("table_name", "row_id", name="uq_ledger_row"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    table_name: Mapped[str] = mapped_column(String(32))
    row_id: Mapped[str] = mapped_column(String(128))
    row_sha256: Mapped[str] = mapped_column(String(64))
    prev_sha256: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))


class SessionRow(Base):
    """A signed-in browser: the cookie holds a random token, this table its hash.

    Sign-out, an idle timeout, disabling the account or a password change end it at once,
    whatever a copied cookie says."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WriterLock(Base):
    """One row that every writer locks first (PostgreSQL): see `writing.Writer`."""

    __tablename__ = "writer_lock"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
