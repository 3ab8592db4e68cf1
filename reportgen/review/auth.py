"""Sessions and CSRF for the review app.

The cookie (Starlette's SessionMiddleware: signed with itsdangerous, SameSite=Strict) holds
a random session token and a random CSRF token. The token is only a key: the session
itself lives in the store (`reportgen.review.store.sessions`) and is checked on every
request, so sign-out, an idle timeout or disabling the account ends it at once, whatever
a copied cookie says. Every write must carry the CSRF token (a form field or the
X-CSRF-Token header), so another site cannot make a signed-in browser write.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request

from reportgen.review.store import RewardLog

CSRF_HEADER = "x-csrf-token"


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, supplied: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not supplied or not hmac.compare_digest(expected, supplied):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token; reload the page")


def signed_in(request: Request, store: RewardLog) -> int | None:
    """The clinician of the request's live session (None: signed out, ended or disabled)."""
    token = request.session.get("sid")
    clinician_id = store.sessions.resolve(token if isinstance(token, str) else None)
    if clinician_id is None:
        return None
    account = store.accounts.get(clinician_id)
    return clinician_id if account is not None and not account.disabled else None


def sign_in(request: Request, store: RewardLog, clinician_id: int) -> None:
    request.session.clear()  # a new session on sign-in: no fixation of an old one
    request.session["sid"] = store.sessions.start(clinician_id)
    request.session["csrf"] = secrets.token_urlsafe(32)


def sign_out(request: Request, store: RewardLog) -> None:
    store.sessions.end(request.session.get("sid"))
    request.session.clear()
