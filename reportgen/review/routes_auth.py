"""Signing in and out of the review app.

Every sign-in, failed sign-in (name tried, client address, time) and sign-out is audited.
A name or address that keeps failing is locked out with exponential back-off
(`throttle.SignInThrottle`) before any password is checked, and a flood of sign-ins waits
for an Argon2 slot on the event loop, then gets 503 (`throttle.PasswordChecks`): it never
holds the threads that serve the readers. The client address is the connection's peer;
a proxy's forwarded headers count only when the operator names the proxy
(`reportgen review --forwarded-allow-ips`).
"""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from reportgen.review import auth
from reportgen.review.deps import clinician, context
from reportgen.review.throttle import Busy

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


def _printable(text: str) -> str:
    """A name as the audit trail may hold it: control characters and NUL replaced."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text[:64])


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return _login_page(request, None)


@router.post("/login")
async def login(
    request: Request,
    username: str = Form(..., max_length=256),
    password: str = Form(..., max_length=4096),
    csrf_token: str = Form("", max_length=256),
):
    auth.check_csrf(request, csrf_token)
    ctx = context(request)
    accounts = ctx.store.accounts
    address = request.client.host if request.client else "unknown"
    keys = [f"user:{_printable(username.strip().lower())}", f"address:{address}"]
    wait = ctx.throttle.retry_after(keys)
    if wait > 0:
        seconds = str(math.ceil(wait))  # not audited: the failures that locked it are
        return _login_page(
            request,
            f"Too many failed sign-ins; try again in {seconds} s.",
            429,
            {"Retry-After": seconds},
        )
    account, stored = await run_in_threadpool(accounts.credentials, username)
    try:
        matched = await ctx.password_checks.run(accounts.password_matches, stored, password)
    except Busy:
        return _login_page(
            request, "The server is busy; try again in a few seconds.", 503, {"Retry-After": "2"}
        )
    found = accounts.admitted(account, matched)
    if found is None:
        ctx.throttle.failed(keys)
        detail = {"user": _printable(username), "address": address}
        await run_in_threadpool(ctx.store.audit, "sign_in_failed", None, None, detail)
        log.info("failed sign-in")
        return _login_page(request, "Unknown user or wrong password.", 401)
    ctx.throttle.succeeded(keys[:1])
    await run_in_threadpool(auth.sign_in, request, ctx.store, found.id)
    await run_in_threadpool(ctx.store.audit, "sign_in", found.id, None, {"address": address})
    return RedirectResponse("/", status_code=303)


@router.post("/logout")
def logout(request: Request, clinician_id: int = Depends(clinician), csrf_token: str = Form("")):
    auth.check_csrf(request, csrf_token)
    context(request).store.audit("sign_out", clinician_id)
    auth.sign_out(request, context(request).store)
    return RedirectResponse("/login", status_code=303)
