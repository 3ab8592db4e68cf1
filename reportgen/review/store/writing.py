"""One write to the reward log: a transaction under the writer lock that links what it adds.

Every write goes through `writing`: it takes the store-wide writer lock first (SQLite:
BEGIN IMMEDIATE, set up in `log._immediate_transactions`; PostgreSQL: a transaction
advisory lock, taken before any insert so two writers can never deadlock on a unique key),
then appends a hash-chain link for every row of a log table the transaction inserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from reportgen.review.store import chain

WRITER_LOCK = 0x7265706F7274  # an arbitrary, fixed advisory lock key ("report")


@contextmanager
def writing(engine: Engine, expire_on_commit: bool = True) -> Iterator[Session]:
    with Session(engine, expire_on_commit=expire_on_commit) as session, session.begin():
        if engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITER_LOCK})
        added: list[tuple[str, object]] = []

        def collect(flushed: Session, _context) -> None:
            for obj in flushed.new:
                table = obj.__table__.name
                if table in chain.CHAINED:
                    added.append((table, obj.id))

        event.listen(session, "after_flush", collect)
        yield session
        session.flush()
        event.remove(session, "after_flush", collect)
        chain.append(session.connection(), added)
