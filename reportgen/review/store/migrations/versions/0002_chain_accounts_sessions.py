"""Hash chain, account changes, claims, server-side sessions; no rewrite by any SQL path.

- `ledger`: one hash-chain link per row of every log table (existing rows are linked here).
- `account_changes` (password, role, disabled), `claims` (who edits a draft): append-only.
- `sessions`: signed-in browsers, checked on every request (the one table updated in place).
- `corrections.opened_by_signer`: False for a signature made without opening the page.
- SQLite: `INSERT OR REPLACE` deletes the old row without firing DELETE triggers, so every
  log table also refuses an insert that would collide with an existing id or unique key.
  `clinicians` and `studies` become append-only too.
- PostgreSQL: `TRUNCATE` fires no row trigger; statement triggers refuse it.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_APPEND_ONLY = ("drafts", "revisions", "signed_reports", "corrections", "audit_events")
NEW_APPEND_ONLY = ("clinicians", "studies", "account_changes", "claims", "ledger")
# each table's id and unique keys: an insert colliding with any of them would be a rewrite
KEYS = {
    "clinicians": [["id"], ["username"]],
    "studies": [["id"]],
    "drafts": [["id"], ["content_sha256"]],
    "revisions": [["id"], ["draft_id", "number"]],
    "signed_reports": [["id"], ["draft_id"]],
    "corrections": [["id"], ["draft_id"]],
    "audit_events": [["id"]],
    "account_changes": [["id"]],
    "claims": [["id"]],
    "ledger": [["seq"], ["table_name", "row_id"]],
}


def upgrade() -> None:
    op.add_column("corrections", sa.Column("opened_by_signer", sa.Boolean, nullable=True))
    op.create_table(
        "account_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinicians.id"), nullable=False),
        sa.Column("by_clinician_id", sa.Integer, sa.ForeignKey("clinicians.id"), nullable=True),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("draft_id", sa.Integer, sa.ForeignKey("drafts.id"), nullable=False),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinicians.id"), nullable=False),
        sa.Column("override", sa.Boolean, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("row_id", sa.String(128), nullable=False),
        sa.Column("row_sha256", sa.String(64), nullable=False),
        sa.Column("prev_sha256", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.UniqueConstraint("table_name", "row_id", name="uq_ledger_row"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("clinician_id", sa.Integer, sa.ForeignKey("clinicians.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_claims_draft", "claims", ["draft_id"])
    op.create_index("ix_account_changes_clinician", "account_changes", ["clinician_id"])
    op.create_index("ix_sessions_clinician", "sessions", ["clinician_id"])
    _guards()
    from reportgen.review.store.chain import chain_existing

    chain_existing(op.get_bind())


def _guards() -> None:
    dialect = op.get_bind().dialect.name
    for table in NEW_APPEND_ONLY:
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
    for table, keys in KEYS.items():
        if dialect == "sqlite":
            collides = " OR ".join(
                "EXISTS (SELECT 1 FROM {t} WHERE {cond})".format(
                    t=table, cond=" AND ".join(f"{c} = NEW.{c}" for c in key)
                )
                for key in keys
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN {collides} "
                f"BEGIN SELECT RAISE(ABORT, 'reward log is append-only: insert over an existing "
                f"row of {table} refused'); END"
            )
        elif dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION reportgen_append_only()"
            )


def downgrade() -> None:
    raise NotImplementedError("the reward log is append-only; restore a backup instead")
