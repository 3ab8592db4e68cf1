"""Opening the reward log: URL handling, SQLite durability settings, migrations to head."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from reportgen.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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


def open_log_engine(db: str) -> Engine:
    engine = create_log_engine(db)
    migrate(engine)
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
