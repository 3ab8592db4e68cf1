"""The reward log: clinicians, studies, drafts, revisions, signed reports, corrections, audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("drafts", "revisions", "signed_reports", "corrections", "audit_events")


def _when() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "clinicians",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        _when(),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("path", sa.String(1024), nullable=True),
        _when(),
    )
    op.create_table(
        "drafts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.String(128), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("report_json", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("checkpoint_sha256", sa.String(64), nullable=True),
        sa.Column("source_path", sa.String(1024), nullable=True),
        _when(),
    )
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("draft_id", sa.Integer, sa.ForeignKey("drafts.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("report_json", sa.Text, nullable=False),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinicians.id"), nullable=False),
        _when(),
        sa.UniqueConstraint("draft_id", "number", name="uq_revision_number"),
    )
    op.create_table(
        "signed_reports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("draft_id", sa.Integer, sa.ForeignKey("drafts.id"), nullable=False, unique=True),
        sa.Column("revision_number", sa.Integer, nullable=False),
        sa.Column("report_json", sa.Text, nullable=False),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinicians.id"), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("draft_id", sa.Integer, sa.ForeignKey("drafts.id"), nullable=False, unique=True),
        sa.Column(
            "signed_report_id", sa.Integer, sa.ForeignKey("signed_reports.id"), nullable=False
        ),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinicians.id"), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("draft_json", sa.Text, nullable=False),
        sa.Column("corrected_json", sa.Text, nullable=False),
        sa.Column("diff", sa.JSON, nullable=False),
        sa.Column("time_spent_s", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("checkpoint_sha256", sa.String(64), nullable=True),
        _when(),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinicians.id"), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("draft_id", sa.Integer, sa.ForeignKey("drafts.id"), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_revisions_draft", "revisions", ["draft_id"])
    op.create_index("ix_audit_draft", "audit_events", ["draft_id"])
    _append_only_triggers()


def _append_only_triggers() -> None:
    """The database itself refuses UPDATE and DELETE on the log's tables."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION reportgen_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'reward log is append-only: % on % refused', TG_OP, TG_TABLE_NAME; "
            "END; $$ LANGUAGE plpgsql"
        )
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'reward log is append-only: {operation} on {table} refused'); END"
                )
        elif dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION reportgen_append_only()"
            )


def downgrade() -> None:
    for table in reversed(
        [
            "clinicians",
            "studies",
            "drafts",
            "revisions",
            "signed_reports",
            "corrections",
            "audit_events",
        ]
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS reportgen_append_only()")
