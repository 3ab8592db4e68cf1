"""A writer lock only the app role can take; sessions that cannot be revived or handed over.

- `writer_lock`: one row; writers lock it (`SELECT ... FOR UPDATE`, which needs SELECT and
  UPDATE on the table) instead of a PostgreSQL advisory lock, which any login could hold.
- `sessions`: only `last_seen_at` may change, and `ended_at` once (NULL to a time): an
  ended session stays ended and a session never changes hands, whatever the app role runs.
  Sessions are never deleted.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SESSION_RULE = "sessions: only last_seen_at may change, and an ended session stays ended"


def upgrade() -> None:
    op.create_table("writer_lock", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("INSERT INTO writer_lock (id) VALUES (1)")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER writer_lock_no_{operation.lower()} BEFORE {operation} ON "
                f"writer_lock BEGIN SELECT RAISE(ABORT, 'writer_lock is fixed'); END"
            )
        op.execute(
            "CREATE TRIGGER sessions_guard BEFORE UPDATE ON sessions WHEN "
            "NEW.id IS NOT OLD.id OR NEW.clinician_id IS NOT OLD.clinician_id "
            "OR NEW.created_at IS NOT OLD.created_at "
            "OR (OLD.ended_at IS NOT NULL AND NEW.ended_at IS NOT OLD.ended_at) "
            f"BEGIN SELECT RAISE(ABORT, '{SESSION_RULE}'); END"
        )
        op.execute(
            "CREATE TRIGGER sessions_no_delete BEFORE DELETE ON sessions "
            f"BEGIN SELECT RAISE(ABORT, '{SESSION_RULE}'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE TRIGGER writer_lock_append_only BEFORE UPDATE OR DELETE ON writer_lock "
            "FOR EACH ROW EXECUTE FUNCTION reportgen_append_only()"
        )
        op.execute(
            "CREATE TRIGGER writer_lock_no_truncate BEFORE TRUNCATE ON writer_lock "
            "FOR EACH STATEMENT EXECUTE FUNCTION reportgen_append_only()"
        )
        op.execute(
            "CREATE FUNCTION reportgen_session_guard() RETURNS trigger AS $$ BEGIN "
            f"IF TG_OP <> 'UPDATE' THEN RAISE EXCEPTION '{SESSION_RULE}'; END IF; "
            "IF NEW.id IS DISTINCT FROM OLD.id OR NEW.clinician_id IS DISTINCT FROM OLD.clinician_id "
            "OR NEW.created_at IS DISTINCT FROM OLD.created_at "
            "OR (OLD.ended_at IS NOT NULL AND NEW.ended_at IS DISTINCT FROM OLD.ended_at) "
            f"THEN RAISE EXCEPTION '{SESSION_RULE}'; END IF; "
            "RETURN NEW; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER sessions_guard BEFORE UPDATE OR DELETE ON sessions "
            "FOR EACH ROW EXECUTE FUNCTION reportgen_session_guard()"
        )
        op.execute(
            "CREATE TRIGGER sessions_no_truncate BEFORE TRUNCATE ON sessions "
            "FOR EACH STATEMENT EXECUTE FUNCTION reportgen_session_guard()"
        )


def downgrade() -> None:
    raise NotImplementedError("the reward log is append-only; restore a backup instead")
