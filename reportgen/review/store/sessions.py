"""Server-side sessions: a signed-in browser is a row here, checked on every request.

The cookie carries a random token; the table holds only its SHA-256, so a stolen database
does not yield live cookies. A session ends at sign-out, after `idle_s` without a request,
`max_age_s` after sign-in, or when its account is disabled or its sessions are ended
(`reportgen users end-sessions`, a password change): a cookie copied before then is dead.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from reportgen.review.store.models import SessionRow

TOUCH_EVERY_S = 30  # last_seen is written at most this often (not one write per request)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, engine: Engine, idle_s: float = 30 * 60, max_age_s: float = 8 * 3600):
        self.engine = engine
        self.idle_s = idle_s
        self.max_age_s = max_age_s

    def start(self, clinician_id: int) -> str:
        """A new session; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        with Session(self.engine) as session, session.begin():
            session.add(SessionRow(id=_key(token), clinician_id=clinician_id))
        return token

    def resolve(self, token: str | None) -> int | None:
        """The clinician a live session token belongs to (None: no such session, or ended).

        One short transaction: ends the session if it timed out, else notes the request
        (at most every `TOUCH_EVERY_S`, so reads do not turn into a write each)."""
        if not token or len(token) > 128:
            return None
        now = datetime.now(UTC)
        with Session(self.engine) as session, session.begin():
            row = session.get(SessionRow, _key(token))
            if row is None or row.ended_at is not None:
                return None
            idle = (now - _utc(row.last_seen_at)).total_seconds()
            if idle > self.idle_s or (now - _utc(row.created_at)).total_seconds() > self.max_age_s:
                row.ended_at = now
                return None
            if idle > TOUCH_EVERY_S:
                row.last_seen_at = now
            return row.clinician_id

    def _end(self, key: str, now: datetime) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(SessionRow)
                .where(SessionRow.id == key, SessionRow.ended_at.is_(None))
                .values(ended_at=now)
            )

    def end(self, token: str | None) -> None:
        if token:
            self._end(_key(token), datetime.now(UTC))

    def end_all(self, clinician_id: int) -> int:
        """End every live session of one clinician; returns how many."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(SessionRow)
                .where(SessionRow.clinician_id == clinician_id, SessionRow.ended_at.is_(None))
                .values(ended_at=datetime.now(UTC))
            )
            return int(result.rowcount or 0)

    def live(self, clinician_id: int) -> int:
        horizon = datetime.now(UTC) - timedelta(seconds=self.idle_s)
        with Session(self.engine) as session:
            rows = session.scalars(
                select(SessionRow).where(
                    SessionRow.clinician_id == clinician_id, SessionRow.ended_at.is_(None)
                )
            ).all()
            return sum(_utc(r.last_seen_at) > horizon for r in rows)
