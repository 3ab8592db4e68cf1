"""Sessions and CSRF for the review app.

The session is a signed cookie (Starlette's SessionMiddleware, itsdangerous) holding the
clinician's id and a random CSRF token. Every write must carry that token (a form field
or the X-CSRF-Token header), so another site cannot make a signed-in browser write.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request

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


def signed_in(request: Request) -> int | None:
    value = request.session.get("clinician_id")
    return int(value) if value is not None else None


def sign_in(request: Request, clinician_id: int) -> None:
    request.session.clear()  # a new session on sign-in: no fixation of an old one
    request.session["clinician_id"] = clinician_id
    request.session["csrf"] = secrets.token_urlsafe(32)


def sign_out(request: Request) -> None:
    request.session.clear()
