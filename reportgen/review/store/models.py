"""The reward log's tables.

Everything a clinician does is an insert: a save is a new revision numbered one past
the version it was based on (a unique (draft, number) pair turns a stale save into a
conflict instead of a lost edit), signing inserts a signed report and a correction
record, and every action appends to the audit trail. Nothing is updated or deleted;
the migration installs triggers that make the database itself refuse it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

APPEND_ONLY_TABLES = ("drafts", "revisions", "signed_reports", "corrections", "audit_events")


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
