"""Clinician accounts: creation, sign-in checks, roles, passwords, disabling.

An account is its `clinicians` row (name, first password) plus its `account_changes`
(new password hashes, roles, disabled or enabled), all append-only. Sign-in spends exactly
one Argon2 verification whether or not the name exists (unknown names are checked against
a fixed dummy hash), so timing cannot tell names apart. How many verifications run at once
is the review app's business (`reportgen.review.throttle.PasswordChecks`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from reportgen.errors import ConfigError
from reportgen.review.store.models import ROLES, AccountChange, AuditEvent, Clinician
from reportgen.review.store.writing import Writer

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


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


def _plausible_username(username: str) -> bool:
    return 0 < len(username) <= 64 and username.isascii() and username.isprintable()


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

    def __init__(self, write: Writer):
        self.engine = write.engine
        self.write = write
        self._hasher = PasswordHasher()
        self._dummy: str | None = None  # made on first use: CLI commands never need it

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

    def credentials(self, username: str) -> tuple[Account | None, str | None]:
        """The account and its password hash, if `username` could be one (no query for a
        name no account can have: over-long, control characters, NUL)."""
        if not _plausible_username(username):
            return None, None
        with Session(self.engine) as session:
            clinician = session.scalar(select(Clinician).where(Clinician.username == username))
            return self._state(session, clinician) if clinician else (None, None)

    def password_matches(self, stored: str | None, password: str) -> bool:
        """One Argon2 verification, against the dummy hash when there is no account, so an
        unknown name costs what a known one does."""
        dummy = self._dummy_hash()  # before the check, so both paths time one verification
        try:
            self._hasher.verify(stored or dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    @staticmethod
    def admitted(account: Account | None, matched: bool) -> Account | None:
        """Who signs in: the account if its password matched and it is enabled."""
        return account if matched and account is not None and not account.disabled else None

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the name and password match and it is enabled (one Argon2 check)."""
        account, stored = self.credentials(username)
        return self.admitted(account, self.password_matches(stored, password))

    # -- changing -------------------------------------------------------------------
    def add(self, username: str, display_name: str, password: str, role: str = "reviewer") -> int:
        username = _check_username(username)
        _check_password(password)
        _check_role(role)
        with self.write() as session:
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
        with self.write() as session:
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
