"""Opening the reward log: URL handling, SQLite durability settings, migrations to head."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from reportgen.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)


def private_file(path: Path) -> None:
    """Create `path` readable by its owner only, or take group/other access off an existing
    one, with its WAL and shared-memory files (SQLite gives those the database's mode):
    the log holds password hashes and clinical reports."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for item in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if item.exists() and stat.S_IMODE(item.stat().st_mode) & 0o077:
            item.chmod(0o600)
            log.warning("%s was readable by others; now 0600", item.name)


def database_url(db: str) -> str:
    """`reviews.db` or `sqlite:///reviews.db` or `postgresql://…` -> a SQLAlchemy URL."""
    if "://" not in db:
        return f"sqlite:///{Path(db).expanduser().resolve()}"
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers work beside a writer; synchronous=FULL makes an acknowledged
    # commit survive a killed process and a power cut; busy_timeout queues writers.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_log_engine(db: str) -> Engine:
    url = database_url(db)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"--db {db!r} is not a database URL or file path") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).parent
            if not folder.is_dir():
                raise ConfigError(f"--db {db!r}: folder {folder} does not exist")
            private_file(Path(parsed.database))
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(f"--db {db!r}: only SQLite files and postgresql:// URLs are supported")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is already there)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(f"cannot open the reward log database: {reason}") from exc
    except DBAPIError as exc:  # e.g. the app's role may not create tables: the owner migrates
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(
            f"cannot bring the reward log's schema up to date as this user ({reason}); "
            "run `reportgen review migrate --db OWNER_URL` as the database owner"
        ) from exc


APP_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {role}",
    "REVOKE INSERT ON alembic_version FROM {role}",
    "REVOKE UPDATE ON sessions FROM {role}",
    "GRANT UPDATE (last_seen_at, ended_at) ON sessions TO {role}",
    "GRANT UPDATE (id) ON writer_lock TO {role}",  # to lock its row; a trigger refuses writes
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
)


def grant_app_role(engine: Engine, role: str) -> None:
    """PostgreSQL: let `role` (which owns nothing) read and append, note a session's last
    request and end it, and take the writer lock: no UPDATE or DELETE of the log, no
    TRUNCATE, DROP or ALTER. Run again after an upgrade that adds tables."""
    if engine.dialect.name != "postgresql":
        raise ConfigError("--app-role is for PostgreSQL; a SQLite file has no roles")
    if not role.replace("_", "").isalnum():
        raise ConfigError(f"--app-role {role!r}: letters, digits and '_' only")
    with engine.begin() as connection:
        found = connection.execute(
            text("SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = :r"),
            {"r": role},
        ).first()
        if found is None:
            raise ConfigError(
                f"no PostgreSQL role {role!r}: create it first (CREATE ROLE ... LOGIN)"
            )
        if found[0] or found[1]:
            raise ConfigError(
                f"role {role!r} is a superuser or the owner; the app needs its own role"
            )
        for statement in APP_GRANTS:
            connection.execute(text(statement.format(role=role)))


def check_schema(engine: Engine) -> None:
    """Every table and column the store uses is there (one sentence, exit 2, otherwise):
    a database whose migrations say "up to date" can still have lost tables by hand."""
    from reportgen.review.store.models import Base

    inspector = inspect(engine)
    present = set(inspector.get_table_names())
    missing = [name for name in Base.metadata.tables if name not in present]
    for name, table in Base.metadata.tables.items():
        if name in present:
            columns = {c["name"] for c in inspector.get_columns(name)}
            missing += [f"{name}.{c.name}" for c in table.columns if c.name not in columns]
    if missing:
        raise ConfigError(
            f"the reward log's schema is damaged ({', '.join(missing[:5])} missing): "
            "restore the database from a backup"
        )


def open_log_engine(db: str) -> Engine:
    engine = create_log_engine(db)
    migrate(engine)
    check_schema(engine)
    return engine


def integrity_problems(engine: Engine) -> list[str]:
    """The database's own consistency check (SQLite integrity_check; PostgreSQL: amcheck-free
    sanity: every table readable and every foreign key satisfied)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = [r[0] for r in connection.execute(text("PRAGMA integrity_check"))]
            problems = [] if rows == ["ok"] else rows
            problems += [
                str(tuple(r)) for r in connection.execute(text("PRAGMA foreign_key_check"))
            ]
            return problems
        problems = []
        for child, column, parent in (
            ("drafts", "study_id", "studies"),
            ("revisions", "draft_id", "drafts"),
            ("signed_reports", "draft_id", "drafts"),
            ("corrections", "signed_report_id", "signed_reports"),
        ):
            orphans = connection.execute(
                text(
                    f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON c.{column} = p.id "
                    "WHERE p.id IS NULL"
                )
            ).scalar_one()
            if orphans:
                problems.append(f"{orphans} rows of {child} point to no {parent}")
        return problems
