"""Signing in and out of the review app.

Every sign-in, failed sign-in (name tried, client address, time) and sign-out is audited.
A name or address that keeps failing is locked out with exponential back-off
(`throttle.SignInThrottle`) before any password is checked, and a flood of sign-ins gets
503 rather than queueing Argon2 work behind the readers (`store.accounts.Busy`).
"""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from reportgen.review import auth
from reportgen.review.deps import clinician, context
from reportgen.review.store.accounts import Busy

log = logging.getLogger(__name__)
router = APIRouter()


def _login_page(request: Request, error: str | None, status: int = 200, headers=None):
    return context(request).pages.TemplateResponse(
        request,
        "login.html",
        {"csrf": auth.csrf_token(request), "error": error},
        status_code=status,
        headers=headers,
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return _login_page(request, None)


@router.post("/login")
def login(
    request: Request,
    username: str = Form(..., max_length=256),
    password: str = Form(..., max_length=4096),
    csrf_token: str = Form("", max_length=256),
):
    auth.check_csrf(request, csrf_token)
    ctx = context(request)
    address = request.client.host if request.client else "unknown"
    keys = [f"user:{username.strip().lower()}", f"address:{address}"]
    wait = ctx.throttle.retry_after(keys)
    if wait > 0:
        seconds = str(math.ceil(wait))  # not audited: the failures that locked it are
        return _login_page(
            request,
            f"Too many failed sign-ins; try again in {seconds} s.",
            429,
            {"Retry-After": seconds},
        )
    try:
        found = ctx.store.accounts.authenticate(username, password)
    except Busy:
        return _login_page(
            request, "The server is busy; try again in a few seconds.", 503, {"Retry-After": "2"}
        )
    if found is None:
        ctx.throttle.failed(keys)
        ctx.store.audit("sign_in_failed", detail={"user": username[:64], "address": address})
        log.info("failed sign-in")
        return _login_page(request, "Unknown user or wrong password.", 401)
    ctx.throttle.succeeded(keys[:1])
    auth.sign_in(request, ctx.store, found.id)
    ctx.store.audit("sign_in", found.id, detail={"address": address})
    return RedirectResponse("/", status_code=303)


@router.post("/logout")
def logout(request: Request, clinician_id: int = Depends(clinician), csrf_token: str = Form("")):
    auth.check_csrf(request, csrf_token)
    context(request).store.audit("sign_out", clinician_id)
    auth.sign_out(request, context(request).store)
    return RedirectResponse("/login", status_code=303)
