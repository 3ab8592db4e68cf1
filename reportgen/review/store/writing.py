"""One write to the reward log: a transaction under the writer lock that links what it adds.

Every write goes through a `Writer`: it takes the store-wide writer lock first (SQLite:
BEGIN IMMEDIATE, set up in `log._immediate_transactions`; PostgreSQL: a row lock on the
one row of `writer_lock`, taken before any insert so two writers can never deadlock on a
unique key), then appends a hash-chain link, keyed with the log's key, for every row of a
log table the transaction inserted.

The PostgreSQL lock is a row lock, not an advisory lock, because any database login may
take any advisory lock: one with no grants at all could hold it and stall every writer.
Locking the row needs SELECT and UPDATE on `writer_lock`, which only the app role has.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from reportgen.review.store import chain

LOCK_ROW = "SELECT id FROM writer_lock WHERE id = 1 FOR UPDATE"


@dataclass(frozen=True)
class Writer:
    """Opens write transactions on one log: its engine and its chain's key."""

    engine: Engine
    key: bytes | None

    @contextmanager
    def __call__(self, expire_on_commit: bool = True) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=expire_on_commit) as session, session.begin():
            if self.engine.dialect.name == "postgresql":
                session.execute(text(LOCK_ROW))
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
            chain.append(session.connection(), added, self.key)
