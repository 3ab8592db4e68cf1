"""Clinician accounts: creation, sign-in checks, roles, passwords, disabling.

An account is its `clinicians` row (name, first password) plus its `account_changes`
(new password hashes, roles, disabled or enabled), all append-only. Sign-in spends exactly
one Argon2 verification whether or not the name exists (unknown names are checked against
a fixed dummy hash), and at most `max_checks` verifications run at once, so a flood of
sign-ins can neither tell names apart nor starve the readers of CPU.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reportgen.errors import ConfigError, ReportgenError
from reportgen.review.store.models import ROLES, AccountChange, AuditEvent, Clinician
from reportgen.review.store.writing import writing

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


class Busy(ReportgenError):
    """Too many sign-ins are being checked at once; the client should retry shortly."""


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    display_name: str
    role: str
    disabled: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _check_username(username: str) -> str:
    username = username.strip()
    if (
        not username
        or len(username) > 64
        or not username.replace(".", "").replace("_", "").replace("-", "").isalnum()
        or not username.isascii()
    ):
        raise ConfigError("a username is 1-64 letters, digits, '.', '_' or '-'")
    return username


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ConfigError(
            f"a password needs {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters"
        )


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"a role is one of {', '.join(ROLES)}, not {role!r}")
    return role


class Accounts:
    """The accounts in one reward log."""

    def __init__(self, engine: Engine, max_checks: int = 2, wait_s: float = 5.0):
        self.engine = engine
        self.wait_s = wait_s
        self._hasher = PasswordHasher()
        self._dummy: str | None = None  # made on first use: CLI commands never need it
        self._checks = threading.BoundedSemaphore(max_checks)

    def _dummy_hash(self) -> str:
        """A hash of a random password: what an unknown name is checked against."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        return self._dummy

    # -- reading --------------------------------------------------------------------
    def _state(self, session: Session, clinician: Clinician) -> tuple[Account, str]:
        changes = session.scalars(
            select(AccountChange)
            .where(AccountChange.clinician_id == clinician.id)
            .order_by(AccountChange.id)
        ).all()
        password_hash, role, disabled = clinician.password_hash, "reviewer", False
        for change in changes:
            password_hash = change.password_hash or password_hash
            role = change.role or role
            disabled = change.disabled if change.disabled is not None else disabled
        account = Account(clinician.id, clinician.username, clinician.display_name, role, disabled)
        return account, password_hash

    def get(self, clinician_id: int, session: Session | None = None) -> Account | None:
        """The account (within `session` when a transaction is open: SQLite has one writer)."""
        if session is None:
            with Session(self.engine) as own:
                return self.get(clinician_id, own)
        clinician = session.get(Clinician, clinician_id)
        return self._state(session, clinician)[0] if clinician else None

    def by_name(self, username: str) -> Account | None:
        with Session(self.engine) as session:
            clinician = session.scalar(select(Clinician).where(Clinician.username == username))
            return self._state(session, clinician)[0] if clinician else None

    def all(self) -> list[Account]:
        with Session(self.engine) as session:
            rows = session.scalars(select(Clinician).order_by(Clinician.id)).all()
            return [self._state(session, c)[0] for c in rows]

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the name and password match and it is enabled (one Argon2 check).

        Raises `Busy` when `max_checks` checks are already running for longer than `wait_s`.
        """
        if len(password) > MAX_PASSWORD_LENGTH or len(username) > 64:
            return None
        with Session(self.engine) as session:
            clinician = session.scalar(select(Clinician).where(Clinician.username == username))
            account, stored = self._state(session, clinician) if clinician else (None, None)
        dummy = self._dummy_hash()  # before the check, so both paths time one verification
        if not self._checks.acquire(timeout=self.wait_s):
            raise Busy("too many sign-ins at once; try again in a few seconds")
        try:
            self._hasher.verify(stored or dummy, password)
            matched = stored is not None
        except (VerificationError, InvalidHashError):
            matched = False
        finally:
            self._checks.release()
        if not matched or account is None or account.disabled:
            return None
        return account

    # -- changing -------------------------------------------------------------------
    def add(self, username: str, display_name: str, password: str, role: str = "reviewer") -> int:
        username = _check_username(username)
        _check_password(password)
        _check_role(role)
        with writing(self.engine) as session:
            if session.scalar(select(Clinician).where(Clinician.username == username)):
                raise ConfigError(f"user {username!r} already exists")
            clinician = Clinician(
                username=username,
                display_name=(display_name or username)[:128],
                password_hash=self._hasher.hash(password),
            )
            session.add(clinician)
            session.flush()
            session.add(AccountChange(clinician_id=clinician.id, role=role))
            session.add(
                AuditEvent(clinician_id=clinician.id, action="user_added", detail={"role": role})
            )
            return clinician.id

    def _change(self, username: str, by: int | None, action: str, **change) -> Account:
        with writing(self.engine) as session:
            clinician = session.scalar(select(Clinician).where(Clinician.username == username))
            if clinician is None:
                raise ConfigError(f"no user {username!r}")
            session.add(AccountChange(clinician_id=clinician.id, by_clinician_id=by, **change))
            detail = {k: v for k, v in change.items() if k != "password_hash"}
            session.add(
                AuditEvent(clinician_id=by, action=action, detail={"user": clinician.id, **detail})
            )
            session.flush()
            return self._state(session, clinician)[0]

    def set_password(self, username: str, password: str, by: int | None = None) -> Account:
        _check_password(password)
        return self._change(
            username, by, "password_changed", password_hash=self._hasher.hash(password)
        )

    def set_role(self, username: str, role: str, by: int | None = None) -> Account:
        return self._change(username, by, "role_changed", role=_check_role(role))

    def set_disabled(self, username: str, disabled: bool, by: int | None = None) -> Account:
        action = "user_disabled" if disabled else "user_enabled"
        return self._change(username, by, action, disabled=disabled)
